"""Fold algebra in float64: what a producer's weight and bias become when a BN is folded in.

At inference a BatchNormalization is the per-channel affine map ``y = x * m + s`` with
``m = gamma / sqrt(var + eps)`` and ``s = beta - mean * m``. Folding it into the producer
scales the producer's weight along its *output-channel* axis and maps its bias ``b`` to
``b * m + s``. Which axis that is depends on the layout:

* Conv ``(Cout, Cin/g, k...)``: axis 0.
* ConvTranspose ``(Cin, Cout/g, k...)``: axis 1 *within each group*: output channel
  ``o = group * (Cout/g) + j`` for weight element ``[i, j]`` with ``group = i // (Cin/g)``.
* Linear (Gemm / MatMul), written here as ``(K, N)``: the last axis. Gemm's ``transB`` and
  ``alpha``/``beta`` are normalised away by the caller (see :class:`Linear`).

Folding forward (BN followed by an unpadded, ungrouped Conv) scales the Conv's *input*
channels instead and moves the shift into the bias: ``b' = b + sum_i,k W[o, i, k] * s[i]``.

Everything here is pure NumPy on float64 arrays; callers cast back to the model's dtype.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from bnlint.analysis.reference import fold_scale

# The layout families a weight can have; fold kinds map onto them.
FAMILY = {
    "conv": "conv",
    "forward_conv": "conv",
    "conv_transpose": "conv_transpose",
    "gemm": "linear",
    "matmul": "linear",
    "matmul_add": "linear",
}


@dataclass(frozen=True)
class BNAffine:
    """The inference-mode BN as ``y = x * mult + shift`` per channel (float64)."""

    mult: np.ndarray
    shift: np.ndarray

    @classmethod
    def from_params(
        cls, scale: np.ndarray, bias: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float
    ) -> BNAffine:
        scale, bias, mean, var = (
            np.asarray(v, dtype=np.float64).reshape(-1) for v in (scale, bias, mean, var)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            mult = fold_scale(scale, var, eps)
        return cls(mult=mult, shift=bias - mean * mult)

    @property
    def channels(self) -> int:
        return int(self.mult.shape[0])


def channel_factor(
    weight_shape: tuple[int, ...], per_channel: np.ndarray, family: str, groups: int = 1
) -> np.ndarray:
    """``per_channel`` (one value per output channel) broadcast onto the weight's layout."""
    rank = len(weight_shape)
    values = np.asarray(per_channel, dtype=np.float64).reshape(-1)
    if family == "conv":
        return values.reshape((-1,) + (1,) * (rank - 1))
    if family == "conv_transpose":
        cin, per_group = weight_shape[0], weight_shape[1]
        grid = values.reshape(groups, 1, per_group)  # [group, ., j]
        grid = np.broadcast_to(grid, (groups, cin // groups, per_group)).reshape(cin, per_group)
        return grid.reshape((cin, per_group) + (1,) * (rank - 2))
    if family == "linear":
        return values.reshape((1,) * (rank - 1) + (-1,))
    raise ValueError(f"unknown weight family {family!r}")


def channel_rows(array: np.ndarray, family: str, groups: int = 1) -> np.ndarray:
    """The weight rearranged to ``(C_out, -1)``: one row per output channel."""
    if family == "conv":
        return array.reshape(array.shape[0], -1)
    if family == "conv_transpose":
        cin, per_group = array.shape[0], array.shape[1]
        grouped = array.reshape(groups, cin // groups, per_group, -1)
        return grouped.transpose(0, 2, 1, 3).reshape(groups * per_group, -1)
    if family == "linear":
        return np.moveaxis(array, -1, 0).reshape(array.shape[-1], -1)
    raise ValueError(f"unknown weight family {family!r}")


def fold_weight(weight: np.ndarray, affine: BNAffine, family: str, groups: int = 1) -> np.ndarray:
    """The producer's weight with the BN scale folded in (backward fold), float64."""
    w = np.asarray(weight)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.multiply(
            w, channel_factor(w.shape, affine.mult, family, groups), dtype=np.float64
        )


@dataclass
class Rounded:
    """A folded weight already rounded into the model's dtype, and its float64 values on
    demand (recomputed, never stored: a ResNet-50's are 200 MB)."""

    value: np.ndarray
    exact: Callable[[], np.ndarray]


def fold_weight_rounded(
    weight: np.ndarray, affine: BNAffine, family: str, groups: int, dtype: str
) -> Rounded | np.ndarray:
    """:func:`fold_weight` rounded once into ``dtype``: NumPy multiplies in float64 in small
    buffered blocks and rounds each into the output, so no float64 copy of the whole
    weight exists. Other dtypes (bfloat16) get the float64 array."""
    w = np.asarray(weight)

    def exact() -> np.ndarray:
        return fold_weight(w, affine, family, groups)

    if dtype not in ("float16", "float32", "float64"):
        return exact()
    factor = channel_factor(w.shape, affine.mult, family, groups)
    out = np.empty(np.broadcast_shapes(w.shape, factor.shape), dtype=dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        np.multiply(w, factor, out=out, dtype=np.float64)
    return Rounded(out, exact)


def fold_bias(bias: np.ndarray | None, affine: BNAffine) -> np.ndarray:
    """``b * m + s`` per channel (``b`` may broadcast, e.g. a Gemm ``C`` of shape (M, N))."""
    if bias is None:
        return affine.shift.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(bias, dtype=np.float64) * affine.mult + affine.shift


def forward_fold(
    weight: np.ndarray, bias: np.ndarray | None, affine: BNAffine
) -> tuple[np.ndarray, np.ndarray]:
    """BN -> Conv (no padding, groups 1): scale input channels, move the shift into the bias."""
    w = np.asarray(weight, dtype=np.float64)
    shape = (1, -1) + (1,) * (w.ndim - 2)
    with np.errstate(over="ignore", invalid="ignore"):
        new_weight = w * affine.mult.reshape(shape)
        absorbed = (w * affine.shift.reshape(shape)).reshape(w.shape[0], -1).sum(axis=1)
    base = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64)
    return new_weight, base + absorbed


@dataclass(frozen=True)
class Linear:
    """A Gemm or MatMul (+ Add) as ``Y = X @ weight + bias`` with ``weight`` shaped (K, N).

    ``weight`` already includes Gemm's ``alpha`` and ``transB``; ``bias`` includes ``beta``
    (None when there is none). This is the form in which two linear layers are compared,
    whatever attributes each tool chose to write.
    """

    weight: np.ndarray
    bias: np.ndarray | None

    @classmethod
    def from_gemm(
        cls,
        b: np.ndarray,
        c: np.ndarray | None,
        alpha: float = 1.0,
        beta: float = 1.0,
        trans_b: int = 0,
    ) -> Linear:
        weight = np.asarray(b, dtype=np.float64)
        weight = (weight.T if trans_b else weight) * float(alpha)
        bias = None if c is None else np.asarray(c, dtype=np.float64) * float(beta)
        return cls(weight, bias)
