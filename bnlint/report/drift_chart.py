"""The HTML report's per-layer drift chart (``--sample-data``): inline SVG, no script.

:func:`drift_extra` keeps, per analysed BatchNorm in graph order, the few numbers the chart
draws (computed in the process that linted the model, from BN021's measurements);
:func:`drift_view` turns them into SVG primitives that ``templates/drift_chart.html.j2``
draws. Two panels share the layer axis: the standardized mean shift (log scale; the bar
spans the median to the worst channel, the dot is the median) and the variance ratio
(log scale both ways; the bar spans the lowest to the highest channel). Dashed lines are
the thresholds; red layers are mismatches; a vertical line marks where the drift starts.
Every label is plain text for Jinja's autoescaping, and each layer's numbers are in its
``<title>`` (a tooltip), so the chart reads without JavaScript.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bnlint.report.sanitize import printable

LEFT, RIGHT, TOP, PANEL, GAP, BOTTOM = 58, 12, 18, 110, 34, 26
MIN_STEP, MAX_STEP, MIN_PLOT, MAX_PLOT = 3.0, 16.0, 420.0, 1030.0


def drift_extra(graph: Any, result: Any = None) -> dict[str, Any] | None:
    """The chart's data from the drift profile BN021 left on ``graph`` (None without one)."""
    profile = graph.cache.drift_profile
    if profile is None or not getattr(profile, "layers", None):
        return None
    t = profile.thresholds
    layers = []
    for layer in profile.layers:
        measured = layer.measured
        shift = np.abs(layer.shift[measured])
        ratio = layer.ratio[measured]
        layers.append(
            {
                "name": layer.site.name,
                "depth": layer.site.depth,
                "channels": layer.site.channels,
                "measured": int(measured.sum()),
                "beyond": int(layer.beyond.sum()),
                "mismatch": bool(layer.mismatch),
                "first": layer is profile.first,
                "underpowered": bool(layer.underpowered and not layer.mismatch),
                "shift_median": float(np.median(shift)) if shift.size else None,
                "shift_max": float(shift.max()) if shift.size else None,
                "ratio_min": float(ratio.min()) if ratio.size else None,
                "ratio_median": float(np.median(ratio)) if ratio.size else None,
                "ratio_max": float(ratio.max()) if ratio.size else None,
            }
        )
    diagnosis = profile.diagnosis
    return {
        "samples": profile.samples,
        "mean_shift": t.mean_shift,
        "variance_ratio": t.variance_ratio,
        "cause": diagnosis.detail() if diagnosis is not None else None,
        "layers": layers,
    }


def _log(value: float | None, floor: float) -> float:
    if value is None or not math.isfinite(value) or value <= 0:
        return floor
    return math.log10(value)


def _label(text: str, limit: int = 40) -> str:
    text = printable(text, None)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decades(low: float, high: float, suffix: str) -> list[tuple[float, str]]:
    ticks = []
    for decade in range(math.ceil(low), math.floor(high) + 1):
        value = 10.0**decade
        text = f"{value:g}" if -3 <= decade <= 4 else f"1e{decade}"
        ticks.append((decade, f"{text}{suffix}" if suffix == "σ" else f"{suffix}{text}"))
    return ticks


def drift_view(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """SVG geometry for the chart, or None without data."""
    if not data or not data.get("layers"):
        return None
    layers = data["layers"]
    count = len(layers)
    plot_w = max(MIN_PLOT, min(MAX_PLOT, MAX_STEP * count), MIN_STEP * count)
    step = plot_w / count
    width = LEFT + plot_w + RIGHT
    top_y0, bottom_y0 = TOP, TOP + PANEL + GAP
    height = bottom_y0 + PANEL + BOTTOM

    shifts = [v for layer in layers for v in (layer["shift_max"],) if v]
    s_low = -2.0
    s_high = max(1.0, math.ceil(_log(max(shifts, default=1.0), 0.0) + 1e-9))
    ratios = [
        abs(_log(v, 0.0)) for layer in layers for v in (layer["ratio_min"], layer["ratio_max"])
    ]
    r_span = max(math.log10(data["variance_ratio"]) * 2, math.ceil(max(ratios, default=0.0)))

    def y_shift(value: float | None) -> float:
        position = (min(max(_log(value, s_low), s_low), s_high) - s_low) / (s_high - s_low)
        return round(top_y0 + PANEL * (1 - position), 1)

    def y_ratio(value: float | None) -> float:
        level = min(max(_log(value, 0.0), -r_span), r_span)
        return round(bottom_y0 + PANEL * (0.5 - level / (2 * r_span)), 1)

    def x_of(index: int) -> float:
        return round(LEFT + (index + 0.5) * step, 1)

    guides, texts = [], []
    for y0, title in ((top_y0, "mean shift (running σ)"), (bottom_y0, "variance ratio")):
        guides.append({"x1": LEFT, "y1": y0, "x2": LEFT, "y2": y0 + PANEL, "cls": "dc-axis"})
        guides.append(
            {"x1": LEFT, "y1": y0 + PANEL, "x2": LEFT + plot_w, "y2": y0 + PANEL, "cls": "dc-axis"}
        )
        texts.append({"x": LEFT, "y": y0 - 5, "text": title, "cls": "dc-title", "anchor": "start"})
    for decade, text in _decades(s_low, s_high, "σ"):
        y = y_shift(10.0**decade)
        guides.append({"x1": LEFT, "y1": y, "x2": LEFT + plot_w, "y2": y, "cls": "dc-grid"})
        texts.append({"x": LEFT - 4, "y": y + 3, "text": text, "cls": "dc-tick", "anchor": "end"})
    for decade, text in _decades(-r_span, r_span, "×"):
        y = y_ratio(10.0**decade)
        guides.append({"x1": LEFT, "y1": y, "x2": LEFT + plot_w, "y2": y, "cls": "dc-grid"})
        texts.append({"x": LEFT - 4, "y": y + 3, "text": text, "cls": "dc-tick", "anchor": "end"})
    tau, rho = data["mean_shift"], data["variance_ratio"]
    for y in (y_shift(tau), y_ratio(rho), y_ratio(1 / rho)):
        guides.append({"x1": LEFT, "y1": y, "x2": LEFT + plot_w, "y2": y, "cls": "dc-threshold"})
    for y, text in ((y_shift(tau), f"threshold {tau:g}σ"), (y_ratio(rho), f"×{rho:g}")):
        texts.append({"x": LEFT + 3, "y": y - 3, "text": text, "cls": "dc-note", "anchor": "start"})
    texts.append(
        {
            "x": LEFT + 3,
            "y": y_ratio(1 / rho) + 10,
            "text": f"×1/{rho:g}",
            "cls": "dc-note",
            "anchor": "start",
        }
    )
    every = max(1, math.ceil(count / 12))
    marks, first_name = [], None
    for index, layer in enumerate(layers):
        x = x_of(index)
        state = "bad" if layer["mismatch"] else ("weak" if layer["underpowered"] else "ok")
        if index % every == 0 or index == count - 1:
            texts.append(
                {
                    "x": x,
                    "y": height - BOTTOM + 14,
                    "text": str(index + 1),
                    "cls": "dc-tick",
                    "anchor": "middle",
                }
            )
        if layer["first"]:
            first_name = layer["name"]
            guides.append(
                {"x1": x, "y1": top_y0, "x2": x, "y2": bottom_y0 + PANEL, "cls": "dc-first"}
            )
        marks.append(
            {
                "title": _tooltip(index, layer),
                "cls": state,
                "bars": [
                    (x, y_shift(layer["shift_median"]), x, y_shift(layer["shift_max"])),
                    (x, y_ratio(layer["ratio_min"]), x, y_ratio(layer["ratio_max"])),
                ],
                "dots": [
                    (x, y_shift(layer["shift_median"])),
                    (x, y_ratio(layer["ratio_median"])),
                ],
            }
        )
    if first_name is not None:
        texts.append(
            {
                "x": x_of(next(i for i, layer in enumerate(layers) if layer["first"])) + 4,
                "y": top_y0 + 12,
                "text": f"drift starts: {_label(first_name)}",
                "cls": "dc-first-label",
                "anchor": "start",
            }
        )
    mismatches = sum(1 for layer in layers if layer["mismatch"])
    return {
        "width": round(width, 1),
        "height": height,
        "guides": guides,
        "texts": texts,
        "marks": marks,
        "radius": 3 if step >= 6 else 1.5,
        "bar_width": 4 if step >= 6 else 1.5,
        "samples": data["samples"],
        "mismatches": mismatches,
        "count": count,
        "first": printable(first_name, None) if first_name else None,
        "cause": printable(data["cause"], None) if data.get("cause") and first_name else None,
        "label": f"per-layer drift of {count} BatchNorm layers against {data['samples']} "
        f"samples: {mismatches} mismatch" + ("" if mismatches == 1 else "es"),
    }


def _tooltip(index: int, layer: dict[str, Any]) -> str:
    def n(value: float | None) -> str:
        return "—" if value is None else f"{value:.3g}"

    verdict = (
        "MISMATCH" if layer["mismatch"] else ("too few samples" if layer["underpowered"] else "ok")
    )
    return printable(
        f"#{index + 1} {layer['name']} (depth {layer['depth']}): {verdict}; mean shift median "
        f"{n(layer['shift_median'])}σ, worst {n(layer['shift_max'])}σ; variance ratio "
        f"{n(layer['ratio_min'])}…{n(layer['ratio_max'])} (median {n(layer['ratio_median'])}); "
        f"{layer['beyond']} of {layer['measured']} channels beyond a threshold",
        None,
    )
