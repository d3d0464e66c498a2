"""Precision hazards of a fold that no verification level can call wrong (BN013's numbers).

- *Mean spread*: a channel whose running mean lies many standard deviations from zero
  subtracts two large, nearly equal numbers — in the BN (``x - mean``) and in the fold
  (``W'x + b'`` with ``b' = beta - mean * scale``) alike. log2(|mean| / sigma) significant
  bits of the model's dtype are lost either way; every tool's fold shows it.
- *Negligible channels*: a channel whose folded weights and bias are all below one
  rounding of the layer's largest output (a pruned channel: gamma 1e-30) flushes to zero
  in a narrow dtype without changing anything that dtype can represent; it is no hazard.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bnlint.analysis.reference import unit_roundoff
from bnlint.graph import ModelGraph, Node

SIGNIFICANT_BITS = {"float64": 53, "float32": 24, "float16": 11, "bfloat16": 8}


def stats_kind(kind: str | None) -> str:
    """The weight layout of a fold kind, as :mod:`bnlint.analysis.bn_params` names it."""
    return {"matmul_transpose": "matmul"}.get(kind or "conv", kind or "conv")


def fan_in(graph: ModelGraph, producer: Node, channels: int) -> int:
    """Weights per output channel of ``producer`` (1 when unknown)."""
    shape = graph.shape(producer.input("weight"))
    if shape is None or not all(isinstance(d, int) for d in shape) or not channels:
        return 1
    return max(1, math.prod(shape) // channels)


def negligible_channels(
    weights: np.ndarray | None, bias: np.ndarray | None, fan: int, dtype: str
) -> np.ndarray | None:
    """Channels whose whole contribution (fan-in x max |folded weight| + |folded bias|) is
    below one rounding of the layer's largest channel in ``dtype``."""
    if weights is None:
        return None
    own = np.where(np.isfinite(weights), weights, 0.0) * fan
    if bias is not None and np.shape(bias) == np.shape(own):
        own = own + np.abs(np.where(np.isfinite(bias), bias, 0.0))
    largest = float(own.max(initial=0.0))
    if largest == 0:
        return None
    return own <= unit_roundoff(dtype) * largest


def mean_spread(params: Any, bits: float, dtype: str) -> dict[str, Any] | None:
    """Channels whose |mean| / sqrt(var + eps) reaches 2**bits, with the bits they lose."""
    if params.mean is None or params.var is None or params.mean.size != params.var.size:
        return None
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.abs(params.mean) / np.sqrt(params.var + params.eps)
    # A channel whose variance is no larger than eps saw a constant input: (x - mean) is
    # then exactly 0 however large the mean, and BN006 speaks for its statistics.
    alive = np.isfinite(ratio) & (params.var > params.eps)
    hit = alive & (ratio >= 2.0**bits)
    if not hit.any():
        return None
    worst = float(ratio[hit].max())
    channels = [int(c) for c in np.flatnonzero(hit)]
    return {
        "count": len(channels),
        "channels": channels[:16],
        "max_ratio": worst,
        "bits_lost": math.log2(worst),
        "significant_bits": SIGNIFICANT_BITS.get(dtype, 24),
    }


def describe_spread(spread: dict[str, Any], dtype: str) -> str:
    lost, total = spread["bits_lost"], spread["significant_bits"]
    return (
        f"the running mean is up to {spread['max_ratio']:.4g} standard deviations from zero "
        f"in {spread['count']} channel(s) {spread['channels']}: the folded bias cancels "
        f"against the weights' output and about {lost:.1f} of {dtype}'s {total} significant "
        "bits are lost (under any fold; the unfolded BN subtracts the same mean)"
    )
