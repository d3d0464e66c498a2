"""Geometry for the HTML report's inline SVG: graph neighbourhoods and range charts.

Only numbers and plain strings come out of here; the template draws them, and Jinja's
autoescaping makes every label text.
"""

from __future__ import annotations

import math
from typing import Any

from bnlint.report.sanitize import printable

BOX_W, BOX_H, GAP, COL_GAP, PAD = 138, 30, 8, 78, 6
CHART_W, CHART_H = 120, 14


def _label(text: str, limit: int = 20) -> str:
    text = printable(text, None)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _box(entry: dict[str, Any], x: float, y: float, role: str) -> dict[str, Any]:
    kind = entry.get("kind") or "other"
    return {
        "x": x,
        "y": y,
        "w": BOX_W,
        "h": BOX_H,
        "cls": f"nb-box nb-{role} nb-kind-{kind}",
        "op": _label(entry.get("op") or kind, 22),
        "name": _label(entry.get("name") or "", 22),
        "title": f"{entry.get('op') or kind} {printable(entry.get('name') or '', 300)}",
    }


def _column(entries: list[dict[str, Any]], x: float, height: float, role: str) -> list[dict]:
    total = len(entries) * BOX_H + max(len(entries) - 1, 0) * GAP
    top = (height - total) / 2
    return [_box(entry, x, top + i * (BOX_H + GAP), role) for i, entry in enumerate(entries)]


def _edge(
    source: dict[str, Any], target: dict[str, Any], shape: str | None = None
) -> dict[str, Any]:
    """An arrow from ``source`` to ``target``, labelled with the tensor's shape."""
    x1, y1 = source["x"] + source["w"], source["y"] + source["h"] / 2
    x2, y2 = target["x"] - 2, target["y"] + target["h"] / 2
    head = f"{x2},{y2} {x2 - 7},{y2 - 4} {x2 - 7},{y2 + 4}"
    label = _label(shape, 16) if shape else None
    return {
        "x1": x1,
        "y1": y1,
        "x2": x2 - 6,
        "y2": y2,
        "head": head,
        "label": label,
        "lx": (x1 + x2) / 2,
        "ly": (y1 + y2) / 2 - 4,
    }


def neighborhood_svg(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """Boxes and arrows for producers → node → consumers, or None without data."""
    if not data:
        return None
    producers, consumers = data.get("producers", []), data.get("consumers", [])
    rows = max(len(producers), len(consumers), 1)
    height = rows * BOX_H + (rows - 1) * GAP + 2 * PAD + 14
    x_mid = PAD + BOX_W + COL_GAP
    x_right = x_mid + BOX_W + COL_GAP
    body = height - 14
    center = _column([data["center"]], x_mid, body, "center")[0]
    left = _column(producers, PAD, body, "producer")
    right = _column(consumers, x_right, body, "consumer")
    notes = []
    if data.get("more_producers"):
        notes.append({"x": PAD, "y": height - 3, "text": f"+{data['more_producers']} more"})
    if data.get("more_consumers"):
        notes.append({"x": x_right, "y": height - 3, "text": f"+{data['more_consumers']} more"})
    if not producers:
        notes.append({"x": PAD, "y": body / 2 + 4, "text": "graph input"})
    if not consumers:
        notes.append({"x": x_right, "y": body / 2 + 4, "text": "graph output"})
    return {
        "width": x_right + BOX_W + PAD,
        "height": height,
        "boxes": [*left, center, *right],
        "edges": [
            *(_edge(box, center, p.get("shape")) for box, p in zip(left, producers, strict=True)),
            *(_edge(center, box, c.get("shape")) for box, c in zip(right, consumers, strict=True)),
        ],
        "notes": notes,
        "label": "graph neighbourhood: "
        + ", ".join(b["title"] for b in left)
        + f" → {center['title']} → "
        + ", ".join(b["title"] for b in right),
    }


def log_domain(summaries: list[dict[str, Any] | None]) -> tuple[float, float]:
    """A shared log10 axis for one column of range charts (whole decades)."""
    values = [
        math.log10(value)
        for summary in summaries
        if summary
        for value in (summary.get("absmin"), summary.get("absmax"))
        if isinstance(value, float) and value > 0
    ]
    if not values:
        return -1.0, 1.0
    low, high = max(math.floor(min(values)), -30), min(math.ceil(max(values)), 30)
    low, high = min(low, 0), max(high, 0)  # 1.0, the healthy value, is always on the axis
    return (low - 1.0, high + 1.0) if low == high else (float(low), float(high))


def typical_level(summaries: list[dict[str, Any] | None]) -> float | None:
    """The median over layers of log10 |median|: what "normal" looks like in this model.

    None below three layers, where no layer is more typical than another.
    """
    levels = sorted(
        math.log10(abs(s["median"])) for s in summaries if s and s.get("median") not in (None, 0)
    )
    return levels[len(levels) // 2] if len(levels) >= 3 else None


def _short(value: float) -> float | int:
    """A coordinate with one decimal and no trailing ``.0`` (the table has thousands)."""
    rounded = round(value, 1)
    return int(rounded) if rounded == int(rounded) else rounded


def range_chart(
    summary: dict[str, Any] | None,
    domain: tuple[float, float],
    typical: float | None,
    *,
    positive: bool = False,
) -> dict[str, Any] | None:
    """A bar from min |x| to max |x| on a log axis with a tick at the median.

    ``hot`` marks what should stand out: non-finite values, non-positive values where only
    positive ones make sense (``positive``: variances), or a median two decades or more
    away from the model's typical layer.
    """
    if not summary:
        return None
    low, high = domain

    def x(value: float | None) -> float | None:
        if value is None or value <= 0:
            return None
        position = (math.log10(value) - low) / (high - low)
        return _short(min(max(position, 0.0), 1.0) * CHART_W)

    start, end = x(summary.get("absmin")), x(summary.get("absmax"))
    median = summary.get("median")
    tick = x(abs(median)) if median not in (None, 0) else None
    reasons = []
    if summary.get("nonfinite"):
        reasons.append(f"{summary['nonfinite']} non-finite")
    if positive and summary.get("nonpositive"):
        reasons.append(f"{summary['nonpositive']} ≤ 0")
    far = median not in (None, 0) and typical is not None
    if far and abs(math.log10(abs(median)) - typical) >= 2:
        reasons.append("far from the other layers")
    return {
        "w": CHART_W,
        "h": CHART_H,
        "start": start if start is not None else 0,
        "width": _short(max((end or 0) - (start or 0), 2)) if start is not None else 0,
        "tick": tick,
        "one": x(1.0),
        "hot": bool(reasons),
        "why": "; ".join(reasons),
    }


def number(value: Any) -> str:
    """A compact number for tables (3 significant digits)."""
    if value is None:
        return "—"
    if isinstance(value, dict) and "nonfinite" in value:  # JSON's stand-in for NaN / inf
        return str(value["nonfinite"])
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.3g}"
    return str(value)
