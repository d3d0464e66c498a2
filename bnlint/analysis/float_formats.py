"""The numeric range of the dtypes a model may run in (float16, bfloat16, float32, float64)
and what per-tensor int8 quantization keeps of each channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bnlint.analysis.channel_evidence import channel_list, channel_summary, describe

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


def target_format(target_dtype: str | None, model_dtype: str | None) -> tuple[FloatFormat, str]:
    """The format a model's folded values must fit and where that choice came from:
    ``--target-dtype``, else the model's own dtype, else float32."""
    fmt = float_format(target_dtype)
    if fmt is not None:
        return fmt, "--target-dtype"
    own = float_format(model_dtype)
    return (own, "model dtype") if own is not None else (float_format("float32"), "default")


def range_findings(
    key: str,
    values: np.ndarray,
    fmt: FloatFormat,
    out: dict,
    msgs: list,
    subnormal: bool,
    ignore: np.ndarray | None = None,
) -> None:
    """Record in ``out`` (evidence) and ``msgs`` (message parts) the channels of ``values``
    beyond ``fmt``'s range (and below its normal range,
    leaving out the ``ignore`` channels, whose flushing changes nothing)."""
    label = key.replace("_", " ")
    finite = np.isfinite(values)
    magnitude = np.abs(np.where(finite, values, 0.0))
    over = finite & (magnitude > fmt.max)
    if over.any():
        found = out[f"{key}_overflow"] = channel_summary(over, magnitude)
        msgs.append(
            f"{label} reaches {describe(float(magnitude[over].max()))} in {found['count']} "
            f"channel(s) {channel_list(found)} (> {fmt.name} max {describe(fmt.max)})"
        )
    tiny = finite & (magnitude > 0) & (magnitude < fmt.min_normal)
    if ignore is not None and ignore.shape == tiny.shape:
        tiny &= ~ignore
    if subnormal and tiny.any():
        flushed = int((tiny & (magnitude <= fmt.min_subnormal / 2)).sum())
        found = out[f"{key}_subnormal"] = {**channel_summary(tiny, magnitude), "flushed": flushed}
        msgs.append(
            f"{label} is below {fmt.name}'s normal range ({describe(fmt.min_normal)}) in "
            f"{found['count']} channel(s) {channel_list(found)}, {flushed} of them flushed to 0"
        )
