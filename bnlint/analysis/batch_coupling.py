"""Does a sample's output depend on the other samples in its batch? (the BN018 probe)

In inference every sample must be computed on its own. A few seeded samples are run
alone and inside a batch with other samples (or, when the batch size is fixed, inside
two batches with different companions); their outputs must agree. When they do not, the
BN that couples them is located: with a runner that can expose intermediate tensors
(``runner.probe(names)``), the BN whose input still agrees while its output differs;
otherwise the BNs that compute batch statistics (training mode, no running statistics).

Only the runner protocol of :mod:`bnlint.runtime` is used, so ONNX Runtime and torch
runners work alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnlint.analysis.reference import unit_roundoff
from bnlint.graph import ModelGraph, Node
from bnlint.runtime import make_feeds

FLOAT32_TOLERANCE = 1e-4  # batched kernels may block differently; coupling is far larger


@dataclass
class Coupling:
    """Sample ``sample``'s output ``output`` changed with its companions by ``max_abs``."""

    sample: int
    output: str
    max_abs: float
    rel: float
    batch_size: int
    tolerance: float
    culprits: list[Node] = field(default_factory=list)
    located_by: str | None = None  # "probe" | "mode"


@dataclass
class ProbeOutcome:
    coupling: Coupling | None = None
    skipped: str | None = None  # why the probe could not run


def tolerance_for(dtype: str, scale: float = 1.0) -> float:
    return scale * FLOAT32_TOLERANCE * max(1.0, unit_roundoff(dtype) / unit_roundoff("float32"))


def _rel(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(other, dtype=np.float64)
    if ref.shape != got.shape:
        return float("inf"), float("inf")
    same = (ref == got) | (np.isnan(ref) & np.isnan(got))
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(same, 0.0, np.nan_to_num(np.abs(ref - got), nan=np.inf))
    max_abs = float(diff.max(initial=0.0))
    scale = float(np.abs(ref[np.isfinite(ref)]).max(initial=0.0))
    if max_abs == 0:
        return 0.0, 0.0
    return max_abs, max_abs / scale if scale > 0 else float("inf")


def _batch_plans(specs: Sequence[Any], input_shapes, batch: int, samples: int, seed: int):
    """(sample index, feeds A, feeds B, row of the sample in A, row in B) to compare."""
    first = specs[0].shape[0] if specs and specs[0].shape else None
    given = dict(input_shapes or {})
    fixed = None
    if isinstance(first, int) and first >= 0:
        fixed = first
    named = given.get(specs[0].name) or given.get("") if specs else None
    if named:
        fixed = int(named[0])
    if fixed is None:
        pool = make_feeds(specs, given, batch=batch, seed=seed)
        for index in range(min(samples, batch)):
            alone = {name: value[index : index + 1] for name, value in pool.items()}
            yield index, pool, alone, index, 0
        return
    if fixed < 2:
        return
    pool_a = make_feeds(specs, given, batch=fixed, seed=seed)
    pool_b = make_feeds(specs, given, batch=fixed, seed=seed + 1)
    for index in range(min(samples, fixed)):
        mixed = {}
        for name, value in pool_b.items():
            mixed[name] = value.copy()
            mixed[name][index] = pool_a[name][index]
        yield index, pool_a, mixed, index, index


def find_coupling(
    graph: ModelGraph,
    runner: Any,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    samples: int = 3,
    batch: int = 4,
    tolerance_scale: float = 1.0,
    seed: int = 0,
) -> ProbeOutcome:
    specs = list(runner.inputs)
    if not specs or any(len(spec.shape) == 0 for spec in specs):
        return ProbeOutcome(skipped="the model has no batched input")
    plans = list(_batch_plans(specs, input_shapes, batch, samples, seed))
    if not plans:
        return ProbeOutcome(skipped="the batch size is fixed at 1")
    for index, feeds_a, feeds_b, row_a, row_b in plans:
        outputs_a = runner.run(feeds_a)
        outputs_b = runner.run(feeds_b)
        for name, out_a, out_b in zip(runner.output_names, outputs_a, outputs_b, strict=False):
            if np.ndim(out_a) == 0 or np.ndim(out_b) == 0:
                continue
            if out_a.shape[0] != len(next(iter(feeds_a.values()))):
                continue  # not a per-sample output
            tolerance = tolerance_for(np.asarray(out_a).dtype.name, tolerance_scale)
            max_abs, rel = _rel(out_a[row_a], out_b[row_b])
            if rel > tolerance:
                coupling = Coupling(
                    index, name, max_abs, rel, len(feeds_a[specs[0].name]), tolerance
                )
                _locate(graph, runner, coupling, (feeds_a, feeds_b, row_a, row_b))
                return ProbeOutcome(coupling)
    return ProbeOutcome()


def _locate(graph: ModelGraph, runner: Any, coupling: Coupling, plan: tuple) -> None:
    bns = [bn for bn in graph.nodes_of("batch_norm") if bn.subgraph is None]
    probe = getattr(runner, "probe", None)
    if probe is not None and bns:
        try:
            culprits = _locate_by_probe(bns, probe, coupling, plan)
        except Exception:  # a runner that cannot expose tensors falls back to the modes
            culprits = None
        if culprits:
            coupling.culprits, coupling.located_by = culprits, "probe"
            return
    suspects = [bn for bn in bns if _uses_batch_statistics(graph, bn)]
    if suspects:
        coupling.culprits, coupling.located_by = suspects, "mode"


def _locate_by_probe(bns: list[Node], probe: Any, coupling: Coupling, plan: tuple) -> list[Node]:
    feeds_a, feeds_b, row_a, row_b = plan
    names = [name for bn in bns for name in (bn.inputs[0], bn.outputs[0])]
    probed = probe(names)
    values_a = dict(zip(probed.output_names, probed.run(feeds_a), strict=False))
    values_b = dict(zip(probed.output_names, probed.run(feeds_b), strict=False))
    values_a.update(feeds_a)
    values_b.update(feeds_b)
    culprits = []
    for bn in bns:
        source, result = bn.inputs[0], bn.outputs[0]
        if not all(n in values_a and n in values_b for n in (source, result)):
            continue
        tolerance = tolerance_for(np.asarray(values_a[result]).dtype.name)
        _, in_rel = _rel(values_a[source][row_a], values_b[source][row_b])
        _, out_rel = _rel(values_a[result][row_a], values_b[result][row_b])
        if in_rel <= tolerance < out_rel:
            culprits.append(bn)
    return culprits


def _uses_batch_statistics(graph: ModelGraph, bn: Node) -> bool:
    if bn.attrs.get("training") or bn.attrs.get("track_running_stats") is False:
        return True
    return any(
        bn.input(role) is None or not graph.is_constant(bn.input(role)) for role in ("mean", "var")
    )
