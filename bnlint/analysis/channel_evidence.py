"""How findings name channels and numbers: the first channels of a mask, a summary of
the values there, a number short enough to read."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


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


def describe(value: float) -> str:
    """A short human rendering of a number (``6.55e+04``, ``0.001``, ``nan``)."""
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
        return f"{value:.3g}"
    return f"{value:.4g}"
