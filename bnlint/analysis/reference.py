"""NumPy reference implementation of BatchNormalization (ground truth for fold checks/tests).

All arithmetic is float64; outputs derived from ``x`` are returned in ``x``'s dtype.

Running-variance semantics differ between frameworks (see ``unbiased_running_var``):

* **PyTorch** normalises with the *biased* batch variance (divide by ``n``) but updates
  ``running_var`` with the *unbiased* one (divide by ``n - 1``). Default here.
* **ONNX** ``BatchNormalization`` (opset 14/15, ``training_mode=1``) uses the *biased*
  (population) variance for both (spec: ``ReduceVar`` "refers to the population variance";
  ``onnx.reference`` uses ``np.var``). Pass ``unbiased_running_var=False``.

``momentum`` follows PyTorch: the weight of the *new* batch statistic. ONNX's ``momentum``
attribute weighs the *old* running value (default 0.9): pass ``1 - onnx_momentum``.
PyTorch's ``momentum=None`` (cumulative average) is ``1 / num_batches_tracked``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

# Half the distance between 1 and the next representable number, per floating dtype.
UNIT_ROUNDOFF = {"float64": 2.0**-53, "float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


def unit_roundoff(dtype: str | None) -> float:
    """The unit roundoff of ``dtype`` (float32's for unknown or non-floating dtypes)."""
    return UNIT_ROUNDOFF.get(dtype or "float32", UNIT_ROUNDOFF["float32"])


@dataclass(frozen=True)
class TrainingResult:
    """Outputs of one training-mode BatchNormalization step.

    Attributes:
        y: Normalised output, same shape and dtype as ``x``.
        batch_mean: Per-channel batch mean, shape ``(C,)``, in ``x``'s dtype.
        batch_var: Per-channel *biased* batch variance (the one used to normalise), ``(C,)``.
        running_mean, running_var: Updated running statistics, shape ``(C,)``.
    """

    y: np.ndarray
    batch_mean: np.ndarray
    batch_var: np.ndarray
    running_mean: np.ndarray
    running_var: np.ndarray


def _as_input(x: ArrayLike, axis: int) -> tuple[np.ndarray, int]:
    """Validate ``x`` (floating point, rank >= 2) and normalise ``axis`` to be non-negative."""
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(f"x must be a floating-point array, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise ValueError(f"x must have rank >= 2 (N, C, ...), got shape {arr.shape}")
    if not -arr.ndim <= axis < arr.ndim:
        raise ValueError(f"axis {axis} is out of range for x of rank {arr.ndim}")
    return arr, axis % arr.ndim


def _param(name: str, value: ArrayLike, channels: int) -> np.ndarray:
    """Return a per-channel parameter as float64 of shape ``(channels,)`` or raise ValueError."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != (channels,):
        raise ValueError(f"{name} must have shape ({channels},) (one per channel), got {arr.shape}")
    return arr


def _dtype_of(value: ArrayLike) -> np.dtype:
    """dtype to return an updated running statistic in: its own if floating, else float64."""
    dtype = np.asarray(value).dtype
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float64)


def _normalise(x64: np.ndarray, params: dict[str, ArrayLike], eps: float, axis: int) -> np.ndarray:
    """float64 core: (x - mean) / sqrt(var + eps) * scale + bias along ``axis``."""
    shape = [1] * x64.ndim
    shape[axis] = -1  # broadcast (C,) vectors along the channel axis
    p = {k: _param(k, v, x64.shape[axis]).reshape(shape) for k, v in params.items()}
    return (x64 - p["mean"]) / np.sqrt(p["var"] + eps) * p["scale"] + p["bias"]


def batch_norm_inference(
    x: ArrayLike,
    scale: ArrayLike,
    bias: ArrayLike,
    mean: ArrayLike,
    var: ArrayLike,
    eps: float = 1e-5,
    axis: int = 1,
) -> np.ndarray:
    """Inference-mode BatchNormalization: ``(x - mean) / sqrt(var + eps) * scale + bias``.

    Args:
        x: Floating-point input of rank >= 2.
        scale, bias, mean, var: Per-channel vectors of shape ``(C,)``.
        eps: Added to ``var`` before the square root.
        axis: Channel axis: ``1`` for (N, C, ...), ``-1`` for channels-last such as (N, L, C).

    Returns:
        Array of ``x``'s shape and dtype, computed in float64.

    Raises:
        ValueError: If rank < 2, ``axis`` is out of range, or a parameter is not ``(C,)``.
        TypeError: If ``x`` is not floating point.
    """
    arr, ax = _as_input(x, axis)
    params = {"scale": scale, "bias": bias, "mean": mean, "var": var}
    y = _normalise(arr.astype(np.float64), params, eps, ax)
    return y.astype(arr.dtype)


def batch_norm_training(
    x: ArrayLike,
    scale: ArrayLike,
    bias: ArrayLike,
    running_mean: ArrayLike,
    running_var: ArrayLike,
    eps: float = 1e-5,
    momentum: float = 0.1,
    axis: int = 1,
    unbiased_running_var: bool = True,
) -> TrainingResult:
    """Training-mode BatchNormalization: normalise with batch statistics, update running ones.

    Statistics are reduced over every axis except ``axis``. ``x`` is normalised with the
    batch mean and the *biased* batch variance. Running statistics are updated as
    ``(1 - momentum) * running + momentum * batch_stat`` (PyTorch convention).

    Args:
        x: Floating-point input of rank >= 2, channels along ``axis``.
        scale, bias: Per-channel affine parameters, shape ``(C,)``.
        running_mean, running_var: Running statistics before this step, shape ``(C,)``.
        eps, axis: As in :func:`batch_norm_inference`.
        momentum: Weight of the new batch statistic (ONNX users: ``1 - onnx_momentum``).
        unbiased_running_var: If True (PyTorch), ``running_var`` is updated with the
            unbiased batch variance ``n / (n - 1) * batch_var``; if False (ONNX opset 14+),
            with the biased one. ``n`` is the number of values per channel.

    Returns:
        :class:`TrainingResult`; ``y`` and batch statistics in ``x``'s dtype, running
        statistics in the dtype of the ones passed in (float64 unless floating point).

    Raises:
        ValueError: As :func:`batch_norm_inference`, or if there are too few values per
            channel (none; or only one with ``unbiased_running_var``, as PyTorch refuses).
        TypeError: If ``x`` is not floating point.
    """
    arr, ax = _as_input(x, axis)
    channels = arr.shape[ax]
    n = arr.size // max(channels, 1)  # values per channel
    if n < (2 if unbiased_running_var else 1):
        raise ValueError(f"x has {n} value(s) per channel; too few for batch statistics")
    rm = _param("running_mean", running_mean, channels)
    rv = _param("running_var", running_var, channels)

    x64 = arr.astype(np.float64)
    reduce_axes = tuple(i for i in range(arr.ndim) if i != ax)
    batch_mean = x64.mean(axis=reduce_axes)
    batch_var = x64.var(axis=reduce_axes)  # biased (ddof=0): used to normalise
    params = {"scale": scale, "bias": bias, "mean": batch_mean, "var": batch_var}
    y = _normalise(x64, params, eps, ax)

    update_var = batch_var * (n / (n - 1)) if unbiased_running_var else batch_var
    new_mean = (1.0 - momentum) * rm + momentum * batch_mean
    new_var = (1.0 - momentum) * rv + momentum * update_var
    return TrainingResult(
        y=y.astype(arr.dtype),
        batch_mean=batch_mean.astype(arr.dtype),
        batch_var=batch_var.astype(arr.dtype),
        running_mean=new_mean.astype(_dtype_of(running_mean)),
        running_var=new_var.astype(_dtype_of(running_var)),
    )


def fold_scale(scale: ArrayLike, var: ArrayLike, eps: float) -> np.ndarray:
    """Per-channel multiplier ``gamma / sqrt(var + eps)`` (float64) folded into the weights.

    Raises:
        ValueError: If ``scale`` and ``var`` are not 1-D vectors of the same length.
    """
    gamma = _param("scale", scale, np.size(scale))  # only checks that scale is 1-D
    return gamma / np.sqrt(_param("var", var, gamma.shape[0]) + eps)


def folded_bias(
    scale: ArrayLike,
    bias: ArrayLike,
    mean: ArrayLike,
    var: ArrayLike,
    eps: float,
    producer_bias: ArrayLike | None = None,
) -> np.ndarray:
    """Bias of the folded producer: ``beta + (b - mean) * gamma / sqrt(var + eps)`` (float64).

    ``producer_bias`` is the bias ``b`` of the preceding Conv/Gemm/Linear (zero if None).

    Raises:
        ValueError: If the vectors are not all 1-D with the same length.
    """
    mult = fold_scale(scale, var, eps)
    c = mult.shape[0]
    b = np.zeros(c) if producer_bias is None else _param("producer_bias", producer_bias, c)
    return _param("bias", bias, c) + (b - _param("mean", mean, c)) * mult
