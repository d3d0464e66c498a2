"""The numeric range of the dtypes a model may run in (float16, bfloat16, float32, float64)
and what per-tensor int8 quantization keeps of each channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bnlint.analysis.channel_evidence import channel_summary

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
