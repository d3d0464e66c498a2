"""``bnlint verify FOLDED --against ORIGINAL``: audit a fold made by any tool, by function.

1. The folded model must pass ``onnx.checker``'s full check (when the original does) and
   load in ONNX Runtime (when the original does): otherwise the audit fails, saying why.
2. Both models are cut into regions at the tensors they share and every changed region
   is evaluated on both sides (:mod:`bnlint.fold.verification`): in float64 always, in
   ONNX Runtime when it can run them, then the whole models on seeded inputs.
3. Each BN of the original gets a verdict from its region: unchanged (``not-folded``),
   the same function without the BN (``folded-correctly``, into whatever computes it now:
   a Conv, a Mul + Add, the next Conv), another function (``folded-wrongly``, with the bug
   class when the new node is a weighted node of the same layout), or ``unmatched`` with
   the reason when its region could not be delimited or evaluated. A fold is only called
   wrong on numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from onnx import ModelProto

from bnlint.fold.diagnose import name_bug
from bnlint.fold.exact import SizeLimit
from bnlint.fold.matching import kept_producer_names, renamed, structural_names
from bnlint.fold.regional import RegionResult, Side
from bnlint.fold.results import FoldError, Verification
from bnlint.fold.runners import ReferenceRunner, light_model
from bnlint.fold.runtime_level import null_fold
from bnlint.fold.sides import side
from bnlint.fold.verdicts import FoldRecord, plan
from bnlint.fold.verification import Runtime, failure, verify
from bnlint.graph import ModelGraph, Node
from bnlint.runtime import RunnerUnavailable

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")

# Plan reasons that make a removed BN a wrong fold, and what was wrong with removing it.
WRONG_REMOVAL = {
    "training-mode": "a training-mode BN was folded as if it were in inference mode: it "
    "normalises with the statistics of each batch, not with its running statistics",
    "no-running-stats": "a BN without running statistics was folded: it normalises with "
    "batch statistics at inference",
    "per-activation": "a spatial=0 BN (per-activation statistics) was folded per channel",
    "producer-shared-output": "it was folded although the producer's output also feeds "
    "other nodes, which now receive BN-scaled values",
    "parameter-overridable": "its parameters are graph inputs; the fold froze them to their "
    "initial values (see BN020)",
    "parameter-not-constant": "its parameters are computed at run time; the fold froze them",
}


@dataclass
class Audit:
    original: ModelGraph
    folded: ModelGraph
    verification: Verification

    @property
    def records(self) -> list[FoldRecord]:
        return self.verification.records


def full_check(model: ModelProto) -> str | None:
    """``onnx.checker``'s full check (shape inference included) on a copy whose top-level
    initializers are declared as graph inputs of the same type instead: the checker sees
    every type and shape but no data, so it never opens (or stats) an external file."""
    import onnx

    from bnlint.fold.runners import light_model

    light, _ = light_model(model, lambda name: None, {})
    declared = {value.name for value in light.graph.input}
    for tensor in light.graph.initializer:
        if tensor.name not in declared:
            light.graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    del light.graph.initializer[:]
    light.ir_version = max(light.ir_version, 4)
    try:
        onnx.checker.check_model(light, full_check=True)
    except Exception as error:
        text = str(error).strip().splitlines()
        return text[0] if text else type(error).__name__
    return None


def _model_problems(original: ModelProto, folded: ModelProto) -> list[str]:
    problem = full_check(folded)
    if problem is not None and full_check(original) is None:
        return [f"the folded model fails onnx.checker's full check: {problem}"]
    return []


def _runtime(
    original_graph, folded_graph, folded_model, problems, input_shapes
) -> tuple[Runtime | None, str | None]:
    """ONNX Runtime runners (a folded model it refuses while it loads the original fails
    the audit), and onnx.reference ones as the fallback."""
    from bnlint.onnx.runtime import OnnxRunner, graph_arrays, import_onnxruntime

    original_model = original_graph.source.onnx_model
    arrays, folded_arrays = graph_arrays(original_graph), graph_arrays(folded_graph)

    def reference() -> dict[str, Any]:
        null = null_fold(original_graph, 0)
        return {
            "original": ReferenceRunner(original_model, arrays),
            "folded": ReferenceRunner(folded_model, folded_arrays),
            "null": ReferenceRunner(original_model, arrays, null),
        }

    try:
        import_onnxruntime()
        reference_runner = OnnxRunner(original_model, arrays=arrays, spin=False)
    except RunnerUnavailable as error:
        return Runtime(None, input_shapes, reference), str(error)
    try:
        candidate = OnnxRunner(folded_model, arrays=folded_arrays, spin=False)
    except RunnerUnavailable as error:
        problems.append(
            f"ONNX Runtime cannot load the folded model (it loads the original): {error}"
        )
        return None, str(error)

    def runners() -> dict[str, Any]:
        light, provider = light_model(original_model, arrays, null_fold(original_graph, 0))
        return {
            "original": reference_runner,
            "folded": candidate,
            "null": OnnxRunner(light, arrays=provider, spin=False),
        }

    return Runtime(runners, input_shapes, reference), None


def audit(
    original: ModelGraph,
    folded_graph: ModelGraph,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    tolerance_scale: float = 1.0,
) -> Audit:
    """Audit the fold ``folded_graph`` of ``original`` (both loaded by the ONNX front end)."""
    for graph in (original, folded_graph):
        if graph.source.onnx_model is None:
            raise FoldError(f"{graph.path}: verify --against compares two ONNX models")
    original_model = original.source.onnx_model
    folded_model = folded_graph.source.onnx_model
    problems = _model_problems(original_model, folded_model)
    mapping = structural_names(original_model, folded_model)
    if mapping:
        folded_model = renamed(folded_model, mapping)
    kept = kept_producer_names(original_model, folded_model)
    if kept:
        folded_model = renamed(folded_model, kept)
    ours, theirs = side(original_model, original), side(folded_model, folded_graph)
    records = [FoldRecord(verdict, "unmatched") for verdict in plan(original)]
    runtime, skipped = _runtime(original, folded_graph, folded_model, problems, input_shapes)
    try:
        verification = verify(
            original,
            ours,
            theirs,
            records,
            runtime=runtime,
            tolerance_scale=tolerance_scale,
            numeric_skipped=skipped,
        )
    except SizeLimit as error:
        raise FoldError(f"audit refused: {error}") from None
    for record in records:
        _verdict(record, original, folded_graph, theirs)
        region = record.region.region if record.region is not None else None
        borders = set(region.inputs + region.outputs) if region is not None else set()
        if record.matched_by and borders & set(mapping.values()):
            record.matched_by = "structure"
    _ambiguous(records, verification, ours)
    verification.unexplained[:0] = problems
    return Audit(original, folded_graph, verification)


def _ambiguous(records: list[FoldRecord], verification: Verification, ours: Side) -> None:
    """A region that computes something else and holds several BNs: one fold in it is wrong,
    but which one the numbers cannot tell. Its BNs are unmatched; the region is reported."""
    seen: set[int] = set()
    for record in records:
        result = record.region
        if result is None or result.ok is not False or len(result.bns) < 2:
            continue
        if record.problem_code not in (None, "mismatch"):
            continue
        record.status, record.reason_code = "unmatched", "ambiguous"
        record.reason = (
            f"its region holds {len(result.bns)} BatchNorms and computes something else; "
            "which fold is wrong cannot be told apart"
        )
        record.problem = record.problem_code = None
        if id(result) not in seen:
            seen.add(id(result))
            scope = ours.view.scopes[result.region.path]
            names = ", ".join(repr(scope.graph.node[i].name) for i in result.bns)
            verification.unexplained.append(f"the region of {names}: {failure(result)}")


def _folded_nodes(result: RegionResult, theirs: Side) -> list:
    scope = theirs.view.scopes[result.region.path]
    return [scope.graph.node[i] for i in result.region.folded]


def _describe(nodes) -> str:
    weighted = [n for n in nodes if n.op_type in WEIGHTED_OPS]
    if len(weighted) == 1:
        return weighted[0].op_type
    data = [n.op_type for n in nodes if n.op_type != "Constant"]
    return " + ".join(data[:4]) or "nothing"


def _verdict(record: FoldRecord, original: ModelGraph, folded: ModelGraph, theirs: Side) -> None:
    verdict, result = record.verdict, record.region
    if result is None:
        record.status, record.reason_code = "unmatched", "unmatched"
        record.reason = "its node was not found in the original's regions"
        return
    nodes = _folded_nodes(result, theirs) if result.region.problem is None else []
    present = [n for n in nodes if n.op_type == "BatchNormalization"]
    if not result.changed:
        record.status = "not-folded"
        if verdict.foldable:
            record.reason_code, record.reason = (
                "left-in-place",
                "the tool left it in place (it can be folded)",
            )
        else:
            record.reason_code, record.reason = verdict.reason_code, verdict.reason
        return
    if result.problem is not None or result.ok is None:
        record.status, record.reason_code = "unmatched", "unmatched"
        record.reason = result.problem or "its region could not be evaluated"
        return
    weighted = [n for n in nodes if n.op_type in WEIGHTED_OPS]
    record.target_op = _describe(nodes)
    record.target_name = weighted[0].name if len(weighted) == 1 else None
    record.matched_by = "tensors"
    if result.ok:
        if present and len(result.bns) == len(present):
            record.status = "not-folded"
            record.reason_code = "still-present"
            record.reason = (
                f"it is still in the folded model (as {present[0].name or 'an unnamed node'!r})"
            )
        else:
            record.status = "folded"
        return
    record.status = "folded" if verdict.foldable else "removed"
    if record.problem is not None:
        return
    if verdict.reason_code in WRONG_REMOVAL and not verdict.foldable:
        record.problem, record.problem_code = (
            WRONG_REMOVAL[verdict.reason_code],
            verdict.reason_code,
        )
        return
    named = _named(record, original, folded, result, weighted)
    if named is not None:
        record.problem_code, text = named
        record.problem = f"{text} ({failure(result)})"
        return
    record.problem, record.problem_code = failure(result), "mismatch"


def _named(record, original, folded, result, weighted):
    """The bug class, when the region became one weighted node of the producer's layout."""
    verdict = record.verdict
    if len(weighted) != 1 or verdict.producer is None or not verdict.foldable:
        return None
    if len(result.bns) != 1 or verdict.kind == "forward_conv":
        return None
    target = _node_of(folded, result, weighted[0])
    if target is None:
        return None
    try:
        return name_bug(original, verdict, folded, target)
    except Exception:  # naming is a courtesy: the verdict stands on the numbers
        return None


def _node_of(graph: ModelGraph, result: RegionResult, proto) -> Node | None:
    outputs = set(proto.output)
    for node in graph.nodes:
        own = node.outputs[0].split("::")[-1] if node.outputs else None
        if own in outputs and node.source_op == proto.op_type:
            return node
    return None
