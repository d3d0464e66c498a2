"""Float64 kernels for the weighted ops a fold touches, each sized before it allocates.

Convolution (1-3 spatial dimensions, groups, strides, dilations, explicit or automatic
padding), transposed convolution (output padding, output shape), Gemm and
BatchNormalization (inference and training mode) follow the ONNX specification, written
independently of any runtime. Every function first computes the bytes it will allocate
and raises :class:`SizeLimit` above the evaluator's budget.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

MAX_TENSOR_BYTES = 256 * 1024**2  # one intermediate of an evaluation (float64)


class EvalError(Exception):
    """A node cannot be evaluated (unsupported op or attribute, shape mismatch)."""


class SizeLimit(EvalError):
    """Evaluating would allocate more than the budget; nothing was allocated."""


def check_size(elements: int | float, what: str, itemsize: int = 8) -> None:
    if elements < 0 or elements * itemsize > MAX_TENSOR_BYTES:
        raise SizeLimit(
            f"{what} would need {int(elements) * itemsize:,} bytes "
            f"(more than {MAX_TENSOR_BYTES:,}); refused before allocating"
        )


def _ints(attrs: dict[str, Any], key: str, default: Sequence[int]) -> list[int]:
    value = attrs.get(key)
    return [int(v) for v in value] if value else list(default)


def conv_pads(
    attrs: dict[str, Any], spatial: Sequence[int], kernel: Sequence[int]
) -> tuple[list[int], list[int], list[int]]:
    """(strides, dilations, pads as begins + ends) with ``auto_pad`` resolved."""
    nd = len(spatial)
    strides = _ints(attrs, "strides", [1] * nd)
    dilations = _ints(attrs, "dilations", [1] * nd)
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins, ends = [], []
        for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            small = total // 2
            begins.append(small if auto_pad == "SAME_UPPER" else total - small)
            ends.append(total - begins[-1])
        return strides, dilations, begins + ends
    if auto_pad == "VALID":
        return strides, dilations, [0] * (2 * nd)
    return strides, dilations, _ints(attrs, "pads", [0] * (2 * nd))


def conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, attrs: dict[str, Any]) -> np.ndarray:
    """ONNX Conv in float64: x (N, C, *S), w (M, C/group, *K)."""
    if x.ndim < 3 or w.ndim != x.ndim:
        raise EvalError(f"Conv of a rank-{x.ndim} input with a rank-{w.ndim} weight")
    nd = x.ndim - 2
    groups = int(attrs.get("group", 1) or 1)
    n, c, spatial = x.shape[0], x.shape[1], x.shape[2:]
    m, cg, kernel = w.shape[0], w.shape[1], w.shape[2:]
    if groups <= 0 or c != cg * groups or m % groups:
        raise EvalError(f"Conv: {c} input channels, weight {w.shape}, group {groups}")
    strides, dilations, pads = conv_pads(attrs, spatial, kernel)
    padded = [size + pads[i] + pads[i + nd] for i, size in enumerate(spatial)]
    extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    out = [(p - e) // s + 1 for p, e, s in zip(padded, extent, strides, strict=True)]
    if any(o <= 0 for o in out) or min(pads, default=0) < 0:
        raise EvalError(f"Conv: input {tuple(spatial)} too small for kernel {tuple(kernel)}")
    check_size(n * c * math.prod(padded), "Conv input padding")
    check_size(n * c * math.prod(out) * math.prod(kernel), "Conv patches")
    check_size(n * m * math.prod(out), "Conv output")
    xp = np.pad(x, [(0, 0), (0, 0)] + [(pads[i], pads[i + nd]) for i in range(nd)])
    windows = sliding_window_view(xp, extent, axis=tuple(range(2, 2 + nd)))
    index = (slice(None), slice(None), *(slice(None, None, s) for s in strides))
    index += tuple(slice(None, None, d) for d in dilations)
    windows = windows[index][(slice(None), slice(None), *(slice(0, o) for o in out))]
    positions, taps = math.prod(out), math.prod(kernel)
    patches = windows.reshape(n, groups, cg, positions, taps)
    # im2col per group: (groups, n * positions, cg * taps) @ (groups, cg * taps, m / groups)
    columns = patches.transpose(1, 0, 3, 2, 4).reshape(groups, n * positions, cg * taps)
    weights = w.reshape(groups, m // groups, cg * taps).transpose(0, 2, 1)
    y = np.matmul(columns, weights)  # (groups, n * positions, m / groups)
    y = y.reshape(groups, n, positions, m // groups).transpose(1, 0, 3, 2).reshape(n, m, *out)
    if b is not None:
        y = y + np.asarray(b).reshape(1, m, *([1] * nd))
    return y


def conv_transpose(
    x: np.ndarray, w: np.ndarray, b: np.ndarray | None, attrs: dict[str, Any]
) -> np.ndarray:
    """ONNX ConvTranspose in float64: x (N, C, *S), w (C, M/group, *K)."""
    if x.ndim < 3 or w.ndim != x.ndim:
        raise EvalError(f"ConvTranspose of a rank-{x.ndim} input with a rank-{w.ndim} weight")
    nd = x.ndim - 2
    groups = int(attrs.get("group", 1) or 1)
    n, c, spatial = x.shape[0], x.shape[1], x.shape[2:]
    mg, kernel = w.shape[1], w.shape[2:]
    if groups <= 0 or w.shape[0] != c or c % groups:
        raise EvalError(f"ConvTranspose: {c} input channels, weight {w.shape}, group {groups}")
    strides = _ints(attrs, "strides", [1] * nd)
    dilations = _ints(attrs, "dilations", [1] * nd)
    extra = _ints(attrs, "output_padding", [0] * nd)
    full = [
        s * (i - 1) + e + ((k - 1) * d + 1)
        for i, s, e, k, d in zip(spatial, strides, extra, kernel, dilations, strict=True)
    ]
    pads = _transpose_pads(attrs, spatial, strides, full, nd)
    out = [f - pads[i] - pads[i + nd] for i, f in enumerate(full)]
    if any(o <= 0 for o in out):
        raise EvalError("ConvTranspose: empty output")
    check_size(n * groups * mg * math.prod(full), "ConvTranspose output")
    y = np.zeros((n, groups, mg, *full))
    cg = c // groups
    xg = x.reshape(n, groups, cg, *spatial)
    wg = w.reshape(groups, cg, mg, *kernel)
    for offset in np.ndindex(*kernel):
        part = np.einsum(
            "ngc...,gcm->ngm...", xg, wg[(slice(None), slice(None), slice(None), *offset)]
        )
        where = tuple(
            slice(k * d, k * d + s * (i - 1) + 1, s)
            for k, d, s, i in zip(offset, dilations, strides, spatial, strict=True)
        )
        y[(slice(None), slice(None), slice(None), *where)] += part
    y = y.reshape(n, groups * mg, *full)
    if min(pads) < 0:  # an output_shape beyond the full extent: zeros at the borders
        grow = [(0, 0), (0, 0)] + [(max(0, -pads[i]), max(0, -pads[i + nd])) for i in range(nd)]
        check_size(n * groups * mg * math.prod(o for o in out), "ConvTranspose output")
        y = np.pad(y, grow)
        pads = [max(0, p) for p in pads]
    crop = tuple(slice(pads[i], pads[i] + out[i]) for i in range(nd))
    y = y[(slice(None), slice(None), *crop)]
    if b is not None:
        y = y + np.asarray(b).reshape(1, -1, *([1] * nd))
    return np.ascontiguousarray(y)


def _transpose_pads(attrs, spatial, strides, full, nd) -> list[int]:
    shape = attrs.get("output_shape")
    auto_pad = attrs.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if shape or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        target = (
            [int(v) for v in shape][-nd:]
            if shape
            else [i * s for i, s in zip(spatial, strides, strict=True)]
        )
        begins, ends = [], []
        for f, t in zip(full, target, strict=True):
            total = f - t
            begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            begins.append(begin)
            ends.append(total - begin)
        return begins + ends
    return _ints(attrs, "pads", [0] * (2 * nd))


def gemm(a, b, c, attrs: dict[str, Any]) -> np.ndarray:
    a = a.T if attrs.get("transA") else a
    b = b.T if attrs.get("transB") else b
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise EvalError(f"Gemm of {a.shape} and {b.shape}")
    check_size(a.shape[0] * b.shape[1], "Gemm output")
    y = float(attrs.get("alpha", 1.0)) * (a @ b)
    if c is not None:
        y = y + float(attrs.get("beta", 1.0)) * c
    return y


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.ndim == 0 or b.ndim == 0:
        raise EvalError("MatMul of a scalar")
    rows = a.shape[-2] if a.ndim > 1 else 1
    cols = b.shape[-1] if b.ndim > 1 else 1
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError as error:
        raise EvalError(f"MatMul: {error}") from None
    check_size(math.prod(batch) * rows * cols, "MatMul output")
    try:
        return np.matmul(a, b)
    except ValueError as error:
        raise EvalError(f"MatMul: {error}") from None


def batch_norm(
    x: np.ndarray,
    params: Sequence[np.ndarray],
    eps: float,
    training: bool,
    spatial: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, scale used, mean used): inference uses running statistics, training the batch's."""
    scale, bias, mean, var = (np.asarray(p, dtype=np.float64) for p in params)
    if x.ndim < 2:
        raise EvalError("BatchNormalization of a rank < 2 input")
    channels = x.shape[1]
    shape = (1, channels, *([1] * (x.ndim - 2))) if spatial else (1, *x.shape[1:])
    try:
        scale, bias, mean, var = (p.reshape(shape) for p in (scale, bias, mean, var))
    except ValueError:
        raise EvalError(f"BatchNormalization parameters do not fit an input of {x.shape}") from None
    if training:
        axes = (0, *range(2, x.ndim)) if spatial else (0,)
        mean = x.mean(axis=axes, keepdims=True)
        var = x.var(axis=axes, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mult = scale / np.sqrt(var + eps)
        return (x - mean) * mult + bias, mult, mean
