"""Run both verification levels on a fold and put the results on each BN's record.

:func:`verify` cuts both models into regions and evaluates every changed one
(:mod:`bnlint.fold.regional`: the algebraic level, float64, no runtime), then, when a
runtime can run the models, the same regions and the whole models in it
(:mod:`bnlint.fold.runtime_level`). Each record gets the checks of the region holding its
BN; a region that computes something else makes its BN's fold wrong, and a changed region
without a BN is blamed on the fold that rewrote a constant it reads, or on the BN it
produces for (a BN applied twice), or reported on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bnlint.fold import runtime_level
from bnlint.fold.blas import one_blas_thread
from bnlint.fold.bounds import Check
from bnlint.fold.regional import RegionResult, Side, compare
from bnlint.fold.results import Verification
from bnlint.fold.runtime_level import compare_outputs, run_regions
from bnlint.fold.verdicts import FoldRecord
from bnlint.graph import ModelGraph
from bnlint.runtime import RunnerUnavailable


@dataclass
class Runtime:
    """How to run the whole models: factories of runners per role (original, folded,
    null), in ONNX Runtime (``runners``, None without it) and in ``onnx.reference`` (the
    fallback when ONNX Runtime cannot run them)."""

    runners: Callable[[], Mapping[str, Any]] | None
    input_shapes: Mapping[str, Sequence[int]] | None = None
    reference: Callable[[], Mapping[str, Any]] | None = None


def verify(
    graph: ModelGraph,
    original: Side,
    folded: Side,
    records: list[FoldRecord],
    *,
    runtime: Runtime | None,
    same_constant=None,
    tolerance_scale: float = 1.0,
    seed: int = 0,
    numeric_skipped: str | None = None,
) -> Verification:
    with one_blas_thread():  # many small products: spinning BLAS threads only cost
        return _verify(
            graph,
            original,
            folded,
            records,
            runtime,
            same_constant,
            tolerance_scale,
            seed,
            numeric_skipped,
        )


def _verify(
    graph: ModelGraph,
    original: Side,
    folded: Side,
    records: list[FoldRecord],
    runtime: Runtime | None,
    same_constant,
    tolerance_scale: float,
    seed: int,
    numeric_skipped: str | None,
) -> Verification:
    results = compare(original, folded, seed, same_constant)
    verification = Verification(records, tolerance_scale=tolerance_scale, algebraic_ran=True)
    verification.numeric_skipped = numeric_skipped
    if runtime is not None and runtime.runners is not None:
        try:
            run_regions(results, original, folded, tolerance_scale)
            verification.numeric_ran, verification.numeric_skipped = True, None
        except RunnerUnavailable as error:
            verification.numeric_skipped = str(error)
    elif runtime is not None:
        verification.numeric_skipped = numeric_skipped or "no runtime for this model"
    if runtime is not None:
        _outputs(graph, verification, runtime, seed)
    attribute(graph, results, records, verification, original)
    return verification


def _outputs(graph: ModelGraph, verification: Verification, runtime: Runtime, seed: int) -> None:
    """The whole models in ONNX Runtime, else in onnx.reference, unless too large."""
    if len(graph) > runtime_level.LOCAL_NODES:
        verification.outputs_skipped = (
            f"the graph has {len(graph)} nodes: the whole models are not run at this size "
            "(every changed region was)"
        )
        return
    reasons = []
    for label, factory in (("onnxruntime", runtime.runners), ("onnx.reference", runtime.reference)):
        if factory is None:
            continue
        try:
            compare_outputs(verification, factory(), runtime.input_shapes, seed)
        except RunnerUnavailable as error:
            reasons.append(f"{label}: {error}")
            verification.outputs = []
            continue
        verification.outputs_by = label
        return
    verification.outputs_skipped = "; ".join(reasons) or "no runtime for this model"


def region_of(results: list[RegionResult], original: Side) -> dict[tuple[str, int], RegionResult]:
    """The region of every original node, by (loader subgraph path, node index)."""
    found = {}
    for result in results:
        key = original.view.scopes[result.region.path].key
        for index in result.region.nodes:
            found[(key, index)] = result
    return found


def node_key(node) -> tuple[str, int]:
    return (node.subgraph or "", node.location.node_index if node.location else -1)


def checks_of(result: RegionResult) -> tuple[Check | None, Check | None]:
    algebraic = min(result.checks, key=lambda c: c.margin, default=None)
    numeric = min(result.numeric, key=lambda c: c.margin, default=None)
    return algebraic, numeric


def failure(result: RegionResult) -> str:
    bad = [c for c in (*result.checks, *result.numeric) if not c.ok]
    check = bad[0]
    level = "in float64 (algebraic level)" if check.level == "algebraic" else "in the runtime"
    return (
        f"{check.tensor!r} differs by {check.error:.3g} {level}, beyond the bound "
        f"{check.bound:.3g} a correct fold respects"
    )


def attribute(
    graph: ModelGraph,
    results: list[RegionResult],
    records: list[FoldRecord],
    verification: Verification,
    original: Side,
) -> None:
    """Link records to regions; blame changed regions without a BN."""
    by_node = region_of(results, original)
    owners: dict[int, FoldRecord] = {}
    for record in records:
        result = by_node.get(node_key(record.bn))
        record.region = result
        if result is None:
            continue
        owners.setdefault(id(result), record)
        record.algebraic, record.numeric = checks_of(result)
    for result in results:
        if not result.changed or result.ok is not False or result.bns:
            continue
        culprit = _culprit(graph, result, results, records, by_node)
        if culprit is None:
            scope = original.view.scopes[result.region.path]
            names = ", ".join(
                repr(scope.graph.node[i].name or scope.graph.node[i].op_type)
                for i in result.region.nodes[:3]
            )
            verification.unexplained.append(
                f"nodes {names} hold no BatchNorm but compute something else now: {failure(result)}"
            )
            continue
        record, problem, code = culprit
        if record.problem is None:
            record.problem, record.problem_code = problem, code


def _culprit(graph, result, results, records, by_node):
    """The fold that broke ``result`` (a region without BN), with the reason."""
    for name in sorted(result.rewritten):
        for record in records:
            other = record.region
            if other is not None and other is not result and name in other.rewritten:
                return (
                    record,
                    f"it rewrote {name!r} in place although other nodes also read it "
                    f"(they now compute something else: {failure(result)})",
                    "shared-constant-rewritten",
                )
    for record in records:
        producer = record.verdict.producer
        feeds_it = producer is not None and by_node.get(node_key(producer)) is result
        if feeds_it and record.region is not None and not record.region.changed:
            return (
                record,
                f"its producer {producer.display_name!r} was scaled by the BN but the BN "
                f"was left in place: it is applied twice ({failure(result)})",
                "applied-twice",
            )
    return None
