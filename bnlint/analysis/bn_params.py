"""BatchNorm parameter helpers shared by the parameter and statistics rules.

Reads a BN's scale (gamma), bias (beta), running mean and running variance as float64
arrays through ``ModelGraph.param``, computes the folded scale gamma / sqrt(var + eps),
and describes the numeric range of the dtypes a model may run in (float16, bfloat16,
float32, float64, int8). Only BN parameters (and, for fold hazards, one producer weight)
are ever materialised: parameters may be memory-mapped slices of very large files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnlint.analysis.weight_absmax import (  # noqa: F401  (re-exported: rules import them from here)
    absmax_cache_key,
    load_param,
    weight_channel_absmax,
)
from bnlint.graph import ModelGraph, Node

BN_ROLES = ("scale", "bias", "mean", "var")
# A BatchNorm parameter with more elements than this is not a per-channel vector; it is
# left unread (BN010 reports its shape) rather than loaded into memory.
MAX_PARAM_ELEMENTS = 1 << 24
INT8_LEVELS = 127  # positive levels of symmetric int8 quantization


@dataclass(frozen=True)
class FloatFormat:
    """The range of one floating-point dtype, in float64."""

    name: str
    max: float
    min_normal: float
    min_subnormal: float

    def round(self, values: np.ndarray | float) -> np.ndarray:
        """``values`` (float64) rounded to this dtype and back: what storing them would keep."""
        array = np.asarray(values, dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            if self.name == "bfloat16":
                return _round_bfloat16(array)
            return array.astype(self.name).astype(np.float64)


FLOAT_FORMATS: dict[str, FloatFormat] = {
    "float16": FloatFormat("float16", 65504.0, 2.0**-14, 2.0**-24),
    "bfloat16": FloatFormat("bfloat16", float.fromhex("0x1.fep127"), 2.0**-126, 2.0**-133),
    "float32": FloatFormat("float32", float(np.finfo(np.float32).max), 2.0**-126, 2.0**-149),
    "float64": FloatFormat("float64", float(np.finfo(np.float64).max), 2.0**-1022, 2.0**-1074),
}


def _round_bfloat16(array: np.ndarray) -> np.ndarray:
    """Round to nearest even on the upper 16 bits of the float32 pattern."""
    bits = array.astype(np.float32).view(np.uint32).astype(np.uint64)
    bits = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    rounded = bits.astype(np.uint32).view(np.float32).astype(np.float64)
    return np.where(np.isnan(array), np.nan, rounded)


def float_format(dtype: str | None) -> FloatFormat | None:
    """The range of ``dtype`` (``float16`` …), or None for integer or unknown dtypes."""
    return FLOAT_FORMATS.get(dtype or "")


@dataclass
class BNParams:
    """One BN's parameters as flat float64 arrays (None when absent or unreadable)."""

    node: Node
    scale: np.ndarray | None
    bias: np.ndarray | None
    mean: np.ndarray | None
    var: np.ndarray | None
    eps: float
    dtype: str | None  # the dtype BN computes in: its input's, else its parameters'
    param_dtype: str | None
    unreadable: dict[str, str] = field(default_factory=dict)  # role -> why

    def get(self, role: str) -> np.ndarray | None:
        return getattr(self, role)

    @property
    def has_statistics(self) -> bool:
        return self.mean is not None and self.var is not None

    def folded_scale(self) -> np.ndarray | None:
        """gamma / sqrt(var + eps) per channel in float64 (gamma = 1 when absent).

        Channels with var + eps <= 0 or non-finite inputs give NaN or Inf; None when the
        variance is unknown or the lengths disagree (BN010's finding).
        """
        if self.var is None:
            return None
        gamma = self.scale if self.scale is not None else np.ones_like(self.var)
        if gamma.size != self.var.size:
            return None
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            return gamma / np.sqrt(self.var + self.eps)

    def folded_shift(self, scale: np.ndarray) -> np.ndarray | None:
        """beta - mean * scale: the BN's additive term after folding (beta = 0 when absent)."""
        if self.mean is None or self.mean.size != scale.size:
            return None
        beta = self.bias if self.bias is not None else np.zeros_like(scale)
        if beta.size != scale.size:
            return None
        with np.errstate(invalid="ignore", over="ignore"):
            return beta - self.mean * scale


def read_float64(graph: ModelGraph, name: str | None) -> tuple[np.ndarray | None, str | None]:
    """A parameter as a flat float64 array, or (None, why) when it cannot be read."""
    if not name or name not in graph.params:
        return None, None if not name else "not a constant parameter"
    shape = graph.params.shape(name)
    if shape is not None and int(np.prod(shape, dtype=object)) > MAX_PARAM_ELEMENTS:
        return None, f"too large for a per-channel parameter {tuple(shape)}"
    array = np.asarray(load_param(graph, name))
    if array.dtype.kind not in "fiub":
        return None, f"unsupported dtype {array.dtype}"
    return array.astype(np.float64).ravel(), None


def bn_dtype(graph: ModelGraph, bn: Node) -> str | None:
    """The dtype a BN computes in: its data input's, else its variance's or scale's."""
    for name in (bn.inputs[0] if bn.inputs else None, bn.input("var"), bn.input("scale")):
        dtype = graph.dtype(name)
        if dtype is not None:
            return dtype
    return None


def bn_params(graph: ModelGraph, bn: Node) -> BNParams:
    """The parameters of ``bn`` (cached on the graph, so several rules share one read).

    When :func:`bnlint.analysis.bn_arrays.bn_arrays` has read every BN at once, the arrays are
    read-only views of its tables; otherwise each parameter is read here.
    """
    cache = graph.cache.bn_params
    found = cache.get(bn.id)
    if found is None:
        # Dtypes first: decoding may widen a stored dtype (bfloat16 is read as float32).
        dtype = bn_dtype(graph, bn)
        param_dtype = graph.dtype(bn.input("var")) or graph.dtype(bn.input("scale"))
        arrays: dict[str, np.ndarray | None] = {}
        unreadable: dict[str, str] = {}
        table = graph.cache.bn_arrays
        row = table.rows.get(bn.id) if table is not None else None
        if row is not None and table.exact[row]:
            arrays = {role: table.values_of(role, row) for role in BN_ROLES}
        else:
            for role in BN_ROLES:
                array, why = read_float64(graph, bn.input(role))
                arrays[role] = array
                if why is not None:
                    unreadable[role] = why
        found = cache[bn.id] = BNParams(
            node=bn,
            eps=float(bn.attrs.get("eps", 1e-5)),
            dtype=dtype,
            param_dtype=param_dtype,
            unreadable=unreadable,
            **arrays,
        )
    return found


def channels(mask: np.ndarray, limit: int = 8) -> list[int]:
    """The first ``limit`` channel indices where ``mask`` holds (messages show a longer list
    cut with :func:`channel_list`)."""
    return [int(i) for i in np.flatnonzero(mask)[:limit]]


def channel_list(summary: dict[str, Any]) -> str:
    """``[3, 7]``, or ``[0, 1, …, 7, …]`` when the summary holds only the first channels."""
    shown = [str(channel) for channel in summary["channels"]]
    if int(summary.get("count", len(shown))) > len(shown):
        shown.append("…")
    return "[" + ", ".join(shown) + "]"


def channel_summary(mask: np.ndarray, values: np.ndarray | None = None) -> dict[str, object]:
    """Evidence for the channels selected by ``mask``: count, first indices, extremes."""
    summary: dict[str, object] = {"count": int(mask.sum()), "channels": channels(mask)}
    if values is not None and mask.any():
        selected = values[mask]
        finite = selected[np.isfinite(selected)]
        if finite.size:
            summary["min"] = float(finite.min())
            summary["max"] = float(finite.max())
    return summary


def int8_channel_spread(per_channel: np.ndarray, spread: float) -> dict[str, Any] | None:
    """How per-tensor symmetric int8 treats channels with these max |w| values.

    The quantization step is set by the largest channel, so a channel whose range is below
    largest / ``spread`` keeps fewer than 127 / ``spread`` levels. Zero (dead) and
    non-finite channels are left out. None when fewer than two channels are live.
    """
    live = np.isfinite(per_channel) & (per_channel > 0)
    if live.sum() < 2:
        return None
    largest = float(per_channel[live].max())
    affected = live & (per_channel < largest / spread)
    levels = np.floor(INT8_LEVELS * per_channel[affected] / largest)
    return {
        "spread_ratio": largest / float(per_channel[live].min()),
        "threshold": spread,
        "live_channels": int(live.sum()),
        "affected": channel_summary(affected, per_channel),
        "affected_fraction": float(affected.sum() / live.sum()),
        "median_levels_affected": float(np.median(levels)) if levels.size else None,
    }


def describe(value: float) -> str:
    """A short human rendering of a number (``6.55e+04``, ``0.001``, ``nan``)."""
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"


def folded_weight_absmax(
    graph: ModelGraph, kind: str, producer: Node, scale: np.ndarray
) -> np.ndarray | None:
    """max |folded weight| per output channel of the producer after folding ``scale`` in.

    Backward folds scale the producer's output channels (Conv: weight axis 0;
    ConvTranspose: axis 1 per group; Gemm: axis 0 with transB, else 1; MatMul: last axis),
    so the channel maximum is max|W_c| * |s_c|. A forward fold into the following Conv
    scales its input channels (axis 1). Only the producer's own weight is read.
    """
    weight_name = producer.input("weight")
    if weight_name is None or weight_name not in graph.params:
        return None
    magnitude = np.abs(scale)
    if kind == "forward_conv":
        weight = np.asarray(load_param(graph, weight_name))
        if weight.dtype.kind != "f" or weight.ndim < 2:
            return None
        if weight.shape[1] != scale.size:
            return None
        per_input = np.abs(weight).reshape(weight.shape[0], weight.shape[1], -1).max(axis=2)
        with np.errstate(over="ignore", invalid="ignore"):
            return (per_input.astype(np.float64) * magnitude[None, :]).max(axis=1)
    per_channel = weight_channel_absmax(
        graph, weight_name, "matmul" if kind == "matmul_add" else kind, producer
    )
    if per_channel is None or per_channel.size != scale.size:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        return per_channel * magnitude


def _producer_bias(graph: ModelGraph, kind: str, producer: Node, add: Node | None, size: int):
    """The producer's additive term per output channel before the BN (0 when it has none)."""
    if kind == "matmul_add" and add is not None:
        name = next((i for i in add.inputs if i and i != producer.outputs[0]), None)
        scale = 1.0
    else:
        name = producer.input("bias")
        scale = float(producer.attrs.get("beta", 1.0)) if kind == "gemm" else 1.0
    if name is None or kind == "matmul":
        return np.zeros(size)
    array, _ = read_float64(graph, name)
    if array is None or array.size not in (1, size):
        return None
    return np.broadcast_to(array * scale, (size,))


def folded_bias(
    graph: ModelGraph,
    kind: str,
    producer: Node,
    add: Node | None,
    params: BNParams,
    scale: np.ndarray,
) -> np.ndarray | None:
    """The per-channel bias a fold writes: (b - mean) * s + beta, or, forward, b + W @ shift."""
    shift = params.folded_shift(scale)
    if shift is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        if kind == "forward_conv":
            weight_name = producer.input("weight")
            if weight_name is None or weight_name not in graph.params:
                return None
            weight = np.asarray(load_param(graph, weight_name), dtype=np.float64)
            if weight.ndim < 2 or weight.shape[1] != shift.size:
                return None
            summed = weight.reshape(weight.shape[0], weight.shape[1], -1).sum(axis=2)
            own = _producer_bias(graph, "conv", producer, None, weight.shape[0])
            return None if own is None else own + summed @ shift
        own = _producer_bias(graph, kind, producer, add, scale.size)
        return None if own is None else own * scale + shift
