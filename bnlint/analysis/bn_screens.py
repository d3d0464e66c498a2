"""Vectorised screens: which BatchNorms may be reported by the parameter rules.

A screen evaluates, over every channel of every BN at once (:mod:`bnlint.analysis.bn_arrays`), a
condition implied by each of the rule's reporting conditions, with thresholds chosen so
that no BN the rule would report is left out (the loosest over all dtypes). The rule then
runs its exact per-BN code on the selected BNs only, in graph order, so its findings are
unchanged: a BN not selected is one whose exact check finds nothing. A BN whose
parameters were not read in bulk is always selected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from bnlint.analysis.bn_arrays import BN_ROLES, BNArrays, bn_arrays
from bnlint.graph import ModelGraph, Node

# The narrowest float formats bound every check: float16's range is the smallest, its
# smallest normal the largest (so a value inside these bounds is fine in every format).
SMALLEST_MAX = 65504.0 * (1 - 1e-9)
LARGEST_MIN_NORMAL = 2.0**-14 * (1 + 1e-9)
ROUNDOFF_LOSS = 2.0**-10  # the coarsest tolerance BN005 uses (16-bit parameters)
# var + eps below this can round to 0 in float16 (2 x its smallest subnormal, 6e-8).
TINY_VARIANCE = 1e-6


def _ids(table: BNArrays, selected: np.ndarray) -> set[int]:
    return {table.bns[row].id for row in np.flatnonzero(selected | ~table.exact)}


def untrained(graph: ModelGraph) -> set[int]:
    """BN005: running mean 0 and variance 1 in every channel, within 2**-10."""
    table = bn_arrays(graph)
    mean, var = table.values["mean"], table.values["var"]
    with np.errstate(invalid="ignore"):
        zero_mean = table.all("mean", np.abs(mean) <= ROUNDOFF_LOSS)
        unit_var = table.all("var", np.abs(var - 1.0) <= ROUNDOFF_LOSS)
    stats = table.present["mean"] & table.present["var"]
    sized = (table.sizes("mean") > 0) & (table.sizes("var") > 0)
    return _ids(table, stats & sized & zero_mean & unit_var)


def degenerate(graph: ModelGraph) -> set[int]:
    """BN006: non-finite values, a variance that is negative, zero or close enough to
    zero (with eps) to round away in float16, a zero scale, or an eps that is not > 0."""
    table = bn_arrays(graph)
    selected = ~(table.eps > 0)
    with np.errstate(invalid="ignore", over="ignore"):
        for role in BN_ROLES:
            selected |= table.any(role, ~np.isfinite(table.values[role]))
        var = table.values["var"]
        total = var + table.per_element("var", table.eps)
        selected |= table.any("var", (var <= 0) | (total < TINY_VARIANCE))
        selected |= table.any("scale", table.values["scale"] == 0)
    return _ids(table, selected)


def _out_of_range(values: np.ndarray) -> np.ndarray:
    magnitude = np.abs(values)
    return (magnitude > SMALLEST_MAX) | ((magnitude > 0) & (magnitude < LARGEST_MIN_NORMAL))


def fold_hazards(
    graph: ModelGraph,
    verdicts: dict[int, Any],
    target_dtype: str | None,
    spread_bits: float = 10.0,
):
    """BN013: any value that a fold could push outside float16's range or normal range.

    None (every BN) for int8 targets, whose channel-spread check needs every weight.
    """
    if target_dtype == "int8":
        return None
    table = bn_arrays(graph)
    selected = np.zeros(len(table.bns), dtype=bool)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for role in BN_ROLES:
            values = table.values[role]
            selected |= table.any(role, np.isfinite(values) & (np.abs(values) > SMALLEST_MAX))
        var = table.values["var"]
        gamma = table.aligned("scale", 1.0)
        scale = gamma / np.sqrt(var + table.per_element("var", table.eps))
        valid = np.isfinite(scale)
        selected |= table.any("var", valid & _out_of_range(scale))
        magnitude = np.where(valid, np.abs(scale), 0.0)
        shift = np.abs(table.aligned("mean", 0.0)) * magnitude + np.abs(table.aligned("bias", 0.0))
        selected |= table.any("var", shift > SMALLEST_MAX)
        spread = np.abs(table.aligned("mean", 0.0)) / np.sqrt(
            var + table.per_element("var", table.eps)
        )
        alive = var > table.per_element("var", table.eps)
        selected |= table.any("var", alive & np.isfinite(spread) & (spread >= 2.0**spread_bits))
    candidates = _ids(table, selected)
    _weight_screen(graph, table, verdicts, magnitude, candidates)
    return candidates


def _weight_screen(
    graph: ModelGraph,
    table: BNArrays,
    verdicts: dict[int, Any],
    magnitude: np.ndarray,
    candidates: set[int],
) -> None:
    """Add BNs whose folded weight (max |W_c| x |s_c|) or producer bias may be out of range."""
    from bnlint.analysis.weight_absmax import weight_channel_absmax

    foldable = [
        (row, verdict)
        for row, bn in enumerate(table.bns)
        if bn.id not in candidates
        and (verdict := verdicts.get(bn.id)) is not None
        and verdict.foldable
        and verdict.producer is not None
    ]
    prefetch_conv_absmax(graph, [v.producer for _, v in foldable if v.kind == "conv"])
    sizes = table.sizes("var")
    checked = np.zeros(len(table.bns), dtype=bool)
    maxima: list[np.ndarray] = []
    for row, verdict in foldable:
        kind, producer = verdict.kind or "conv", verdict.producer
        has_bias = kind != "matmul" and (producer.input("bias") is not None or kind == "matmul_add")
        weight = producer.input("weight")
        absmax = None
        if kind != "forward_conv" and not has_bias and weight is not None:
            try:
                if weight in graph.params:
                    absmax = weight_channel_absmax(
                        graph, weight, "matmul" if kind == "matmul_add" else kind, producer
                    )
            except Exception:  # UnreadableParameter included: the exact path reports it
                absmax = None
        if absmax is None or absmax.size != sizes[row]:
            candidates.add(table.bns[row].id)
            continue
        checked[row] = True
        maxima.append(absmax)
    if not maxima:
        return
    # Every checked BN's channels, in row order, against its folded scale.
    scale = magnitude[table.per_element("var", checked)]
    with np.errstate(invalid="ignore", over="ignore"):
        outside = _out_of_range(np.concatenate(maxima) * scale)
    totals = np.concatenate(([0], np.cumsum(outside, dtype=np.int64)))
    ends = np.cumsum(sizes[checked])
    counts = totals[ends] - totals[ends - sizes[checked]]
    for row in np.flatnonzero(checked)[counts > 0]:
        candidates.add(table.bns[row].id)


SMALL_WEIGHT_BYTES = 1 << 16  # weights up to this size are reduced together


def prefetch_conv_absmax(graph: ModelGraph, producers: Iterable[Node]) -> None:
    """Per-channel max |W| of many small Conv weights at once (grouped by shape and dtype),
    into the cache :func:`bnlint.analysis.bn_params.weight_channel_absmax` reads."""
    from bnlint.analysis.weight_absmax import absmax_cache_key

    cache = graph.cache.weight_absmax
    groups: dict[tuple, list[tuple[Any, bytes]]] = {}
    params = graph.params
    for producer in producers:
        name = producer.input("weight")
        key = absmax_cache_key(name, "conv", producer) if name else None
        if key is None or key in cache:
            continue
        shape = params.shape(name)
        if not shape or len(shape) < 2 or 0 in shape:
            continue
        found = params.raw_floats(name, SMALL_WEIGHT_BYTES // 2)
        if found is None or len(found[1]) > SMALL_WEIGHT_BYTES:
            continue  # large weights are read on their own, block by block
        dtype, raw, _ = found
        groups.setdefault((dtype, tuple(shape)), []).append((key, raw))
    for (dtype, shape), members in groups.items():
        stacked = np.frombuffer(b"".join(raw for _, raw in members), dtype)
        stacked = stacked.reshape(len(members), shape[0], -1)
        maxima = np.maximum(stacked.max(axis=2), -stacked.min(axis=2)).astype(np.float64)
        for (key, _), row in zip(members, maxima, strict=True):
            cache[key] = row
