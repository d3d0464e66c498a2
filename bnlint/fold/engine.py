"""Fold a loaded model and verify the result: the engine behind ``bnlint fold`` and BN012.

ONNX graphs fold through :mod:`bnlint.fold.rewrite`; PyTorch graphs that carry their live
module (``graph.source.torch_module``, set by the PyTorch front end) fold through
:mod:`bnlint.fold.torch_fold`. Either way the result is one :class:`FoldRecord` per BN and a
:class:`Verification` with both levels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from weakref import WeakKeyDictionary

from bnlint.fold.exact import SizeLimit
from bnlint.fold.results import FoldError, FoldResult
from bnlint.fold.rewrite import fold_model
from bnlint.fold.runners import ReferenceRunner, light_model
from bnlint.fold.runtime_level import null_fold
from bnlint.fold.sides import read_tensor, side, written_reader
from bnlint.fold.torch_verify import fold_torch_graph
from bnlint.fold.verification import Runtime, failure, verify
from bnlint.graph import ModelGraph
from bnlint.onnx.model_io import FoldIOError
from bnlint.runtime import RunnerUnavailable

_VERIFIED: WeakKeyDictionary[ModelGraph, FoldResult] = WeakKeyDictionary()


def verify_graph(
    graph: ModelGraph,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    tolerance_scale: float = 1.0,
) -> FoldResult:
    """``fold_graph`` for the lint (BN012): remembered per graph, so the report's
    verification section (:func:`verification_of`) shows the same verdicts."""
    result = fold_graph(graph, input_shapes=input_shapes, tolerance_scale=tolerance_scale)
    _VERIFIED[graph] = result
    return result


def verification_of(graph: ModelGraph) -> dict[str, Any] | None:
    """The verification section of ``graph``'s report, if BN012 verified its folds."""
    from bnlint.fold.report import verification_section

    result = _VERIFIED.get(graph)
    return None if result is None else verification_section(result.verification)


def fold_graph(
    graph: ModelGraph,
    *,
    keep: Iterable[str] = (),
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    tolerance_scale: float = 1.0,
    numeric: bool = True,
) -> FoldResult:
    """Fold every foldable BN of ``graph`` on a copy and verify the copy."""
    if graph.source.onnx_model is not None:
        return _fold_onnx(graph, keep, input_shapes, tolerance_scale, numeric)
    if graph.source.torch_module is not None:
        return fold_torch_graph(graph, keep=keep, tolerance_scale=tolerance_scale)
    raise FoldError(f"{graph.facts.format} models cannot be folded (no ONNX model or live module)")


def _fold_onnx(
    graph: ModelGraph,
    keep: Iterable[str],
    input_shapes: Mapping[str, Sequence[int]] | None,
    tolerance_scale: float,
    numeric: bool,
) -> FoldResult:
    model = graph.source.onnx_model
    try:
        folded_model, records, written = fold_model(model, graph, keep)
        original = side(model, graph)
        folded = side(folded_model, graph, written_reader(folded_model, graph, written))
    except FoldIOError as error:
        raise FoldError(str(error)) from None

    def same_constant(a, b, name: str) -> bool:
        return a.key == b.key and b.param_key(name) not in written

    runtime, skipped = None, "the numeric level was not requested"
    if numeric:
        runtime, skipped = _runtime(graph, model, folded_model, written, input_shapes)
    try:
        verification = verify(
            graph,
            original,
            folded,
            records,
            runtime=runtime,
            same_constant=same_constant,
            tolerance_scale=tolerance_scale,
            numeric_skipped=skipped,
        )
    except SizeLimit as error:
        raise FoldError(f"verification refused: {error}") from None
    _own_verdicts(verification)
    return FoldResult(verification, folded_model, "onnx")


def _runtime(graph, model, folded_model, written, input_shapes):
    """ONNX Runtime runners when it is installed, and onnx.reference ones as the fallback."""
    from bnlint.onnx.runtime import OnnxRunner, graph_arrays, import_onnxruntime

    original = graph_arrays(graph)
    folded_arrays = {}

    def folded_weights(name: str) -> Any:
        if name in written:
            if name not in folded_arrays:
                tensor = next(t for t in folded_model.graph.initializer if t.name == name)
                folded_arrays[name] = read_tensor(tensor)
            return folded_arrays[name]
        return original(name)

    def runners() -> dict[str, Any]:
        light, provider = light_model(model, original, null_fold(graph, seed=0))
        return {
            "original": OnnxRunner(model, arrays=original, spin=False),
            "folded": OnnxRunner(folded_model, arrays=folded_weights, spin=False),
            "null": OnnxRunner(light, arrays=provider, spin=False),
        }

    def reference() -> dict[str, Any]:
        return {
            "original": ReferenceRunner(model, original),
            "folded": ReferenceRunner(folded_model, folded_weights),
            "null": ReferenceRunner(model, original, null_fold(graph, seed=0)),
        }

    try:
        import_onnxruntime()
    except RunnerUnavailable as error:
        return Runtime(None, input_shapes, reference), str(error)
    return Runtime(runners, input_shapes, reference), None


def _own_verdicts(verification) -> None:
    """bnlint's own fold: a folded BN whose region did not verify is a failed fold."""
    for record in verification.records:
        result = record.region
        if record.status == "folded":
            if result is None or result.problem is not None or not result.checks:
                why = result.problem if result is not None else "its region was not found"
                record.problem = record.problem or f"the fold could not be verified: {why}"
                record.problem_code = record.problem_code or "unverified"
            elif result.ok is False and record.problem is None:
                record.problem, record.problem_code = failure(result), "mismatch"
        elif result is not None and result.changed and result.ok is False and not record.problem:
            record.problem, record.problem_code = failure(result), "mismatch"


def check_onnx(model: Any) -> str | None:
    """``onnx.checker``'s complaint about ``model``, or None when it passes."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=False)
    except (onnx.checker.ValidationError, ValueError) as error:
        return str(error).strip().splitlines()[0]
    return None
