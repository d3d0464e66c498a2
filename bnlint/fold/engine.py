"""Fold a loaded model and verify the result: the engine behind ``bnlint fold`` and BN012.

ONNX graphs fold through :mod:`bnlint.fold.rewrite`; PyTorch graphs that carry their live
module (``graph.extras["torch_module"]``, set by the PyTorch front end) fold through
:mod:`bnlint.fold.torch_fold`. Either way the result is one :class:`FoldRecord` per BN and a
:class:`Verification` with both levels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bnlint.fold.numeric import onnx_runners, verify_records
from bnlint.fold.results import FoldError, FoldResult
from bnlint.fold.rewrite import fold_model
from bnlint.fold.torch_fold import fold_torch_graph
from bnlint.graph import ModelGraph
from bnlint.onnx_io import FoldIOError


def fold_graph(
    graph: ModelGraph,
    *,
    keep: Iterable[str] = (),
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    tolerance_scale: float = 1.0,
    numeric: bool = True,
) -> FoldResult:
    """Fold every foldable BN of ``graph`` on a copy and verify the copy."""
    if "onnx_model" in graph.extras:
        return _fold_onnx(graph, keep, input_shapes, tolerance_scale, numeric)
    if "torch_module" in graph.extras:
        return fold_torch_graph(graph, keep=keep, tolerance_scale=tolerance_scale)
    raise FoldError(f"{graph.facts.format} models cannot be folded (no ONNX model or live module)")


def _fold_onnx(
    graph: ModelGraph,
    keep: Iterable[str],
    input_shapes: Mapping[str, Sequence[int]] | None,
    tolerance_scale: float,
    numeric: bool,
) -> FoldResult:
    from bnlint.loaders import LoadError
    from bnlint.loaders.onnx import build_graph

    model = graph.extras["onnx_model"]
    try:
        folded_model, records, rewritten = fold_model(model, graph, keep)
    except FoldIOError as error:
        raise FoldError(str(error)) from None
    settings = SimpleNamespace(input_shapes=dict(input_shapes or {}))
    try:
        folded_graph = build_graph(folded_model, Path(graph.path), settings)
    except LoadError as error:
        raise FoldError(f"the folded model cannot be read back: {error.problem}") from None
    runners = (None, None)
    if numeric:
        from bnlint.runtime_onnx import graph_arrays

        # Weights reach ONNX Runtime as arrays: the original's straight from the loaded
        # file (memory-mapped), rewritten ones from the folded model.
        original = graph_arrays(graph)
        folded_arrays = graph_arrays(folded_graph)

        def folded_weights(name: str) -> Any:
            return folded_arrays(name) if name in rewritten else original(name)

        runners = onnx_runners(model, folded_model, original, folded_weights)
    verification = verify_records(
        graph,
        folded_graph,
        records,
        reference_runner=runners[0],
        folded_runner=runners[1],
        input_shapes=input_shapes,
        tolerance_scale=tolerance_scale,
    )
    if not numeric:
        verification.numeric_skipped = "the numeric level was not requested"
    return FoldResult(verification, folded_model, "onnx")


def check_onnx(model: Any) -> str | None:
    """``onnx.checker``'s complaint about ``model``, or None when it passes."""
    import onnx

    try:
        onnx.checker.check_model(model, full_check=False)
    except (onnx.checker.ValidationError, ValueError) as error:
        return str(error).strip().splitlines()[0]
    return None
