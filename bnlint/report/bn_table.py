"""Per-BatchNorm statistics for the HTML report's table and charts.

Computed in the process that linted the model, while its graph is alive, and stored in
``ModelResult.report_data.bn_table`` as plain data (picklable, JSON-friendly). Only BN
parameters are read (through :func:`bnlint.analysis.bn_params.bn_params`, shared with the
rules), never producer weights: gamma, the running variance and the folded scale
gamma / sqrt(var + eps) per channel, each summarised as a range.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from bnlint.graph import ModelGraph


def summarize(values: np.ndarray | None) -> dict[str, Any] | None:
    """min / median / max (finite values), |x| range of finite non-zero values, defects."""
    if values is None or values.size == 0:
        return None
    finite = values[np.isfinite(values)]
    nonzero = np.abs(finite[finite != 0])
    return {
        "count": int(values.size),
        "min": float(finite.min()) if finite.size else None,
        "median": float(np.median(finite)) if finite.size else None,
        "max": float(finite.max()) if finite.size else None,
        "absmin": float(nonzero.min()) if nonzero.size else None,
        "absmax": float(nonzero.max()) if nonzero.size else None,
        "nonfinite": int(values.size - finite.size),
        "nonpositive": int(np.count_nonzero(finite <= 0)),
    }


def fold_verdicts(graph: ModelGraph) -> dict[int, dict[str, Any]]:
    """Each BN's fold plan verdict (BN011's), by node id: into what, or why not."""
    from bnlint.fold import KIND_LABEL, plan

    verdicts = {}
    for verdict in plan(graph):
        into = None
        if verdict.foldable and verdict.producer is not None:
            into = f"{KIND_LABEL[verdict.kind or 'conv']} {verdict.producer.display_name}"
        verdicts[verdict.bn.id] = {
            "foldable": verdict.foldable,
            "into": into,
            "reason": verdict.reason,
            "reason_code": verdict.reason_code,
        }
    return verdicts


def bn_table(graph: ModelGraph, phase: str | None = None) -> list[dict[str, Any]]:
    """One row per BatchNorm in graph order; in an inference graph with each BN's fold
    verdict (``fold``)."""
    from bnlint.analysis.bn_params import bn_params

    verdicts: dict[int, dict[str, Any]] = {}
    if phase == "inference" and graph.facts.provides("producer_edges"):
        try:
            verdicts = fold_verdicts(graph)
        except Exception:  # the summary line then has no fold count either
            verdicts = {}
    rows = []
    for bn in graph.nodes_of("batch_norm"):
        params = bn_params(graph, bn)
        scale = params.folded_scale()
        channels = next(
            (a.size for a in (params.var, params.scale, params.mean) if a is not None), None
        )
        rows.append(
            {
                "id": bn.id,
                "node": bn.name,
                "scope": bn.scope,
                "op": bn.source_op,
                "channels": channels,
                "eps": params.eps if math.isfinite(params.eps) else str(params.eps),
                "dtype": params.dtype,
                "training": bool(bn.attrs.get("training")),
                "gamma": summarize(params.scale),
                "var": summarize(params.var),
                "scale": summarize(scale),
                "unreadable": sorted(params.unreadable),
                "fold": verdicts.get(bn.id),
            }
        )
    return rows
