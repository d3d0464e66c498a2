"""Verification level 2 (numeric) and the driver that runs both levels on a set of folds.

Original and folded model run on the same seeded inputs, each in its own runtime session
with graph optimizations disabled. Errors are measured against the reference tensor's
magnitude, ``max |folded - original| / max |original|`` (element-wise relative error is
meaningless where outputs cross zero), and compared with a tolerance per dtype: 2e-6 for
float32 (about 34 units of rounding: correct folds of a ResNet-50 land near 5e-7), scaled
by the unit roundoff for the other floating types.

Per BN the tensors around the fold are compared too: the fold's input (which must still
agree, else the error comes from upstream) and its output. A fold whose input agrees and
whose output does not is the one that broke the model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bnlint.fold.algebra import check_algebra
from bnlint.fold.algebra_batch import batch_conv_algebra
from bnlint.fold.local import verify_per_fold
from bnlint.fold.results import (
    LOCAL_NODES,
    NumericResult,
    Verification,
    numeric_tolerance,
    tensor_error,
)
from bnlint.fold.verdicts import FoldRecord
from bnlint.graph import ModelGraph
from bnlint.runtime import RunnerUnavailable

RunnerFactory = Callable[[Sequence[str]], Any]


def verify_records(
    original: ModelGraph,
    folded: ModelGraph,
    records: list[FoldRecord],
    *,
    reference_runner: RunnerFactory | None,
    folded_runner: RunnerFactory | None,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    tolerance_scale: float = 1.0,
    seed: int = 0,
) -> Verification:
    """Check every ``folded`` record algebraically, then run both models when possible.

    A runner factory takes the intermediate tensor names to expose and returns a runner;
    when it raises :class:`RunnerUnavailable` the numeric level is skipped and says why.
    """
    top_level = {
        node.location.node_index: node
        for node in folded.nodes
        if node.subgraph is None and node.location is not None
    }
    batched = batch_conv_algebra(
        original,
        folded,
        [
            (index, record, top_level[record.target_index])
            for index, record in enumerate(records)
            if record.status == "folded" and record.target_index in top_level
        ],
    )
    for index, record in enumerate(records):
        if record.status != "folded" or record.target_index not in top_level:
            continue
        target = top_level[record.target_index]
        add = top_level.get(record.add_index) if record.add_index is not None else None
        algebra = batched.get(index) or check_algebra(original, record, folded, target, add)
        # Records belong to this verification (made by the fold or the audit): set in place.
        record.algebra = algebra
        record.problem = record.problem or (None if algebra.ok else algebra.problem)
        record.target_name = target.display_name
        record.target_op = target.source_op
    dtype = _output_dtype(original)
    result = Verification(
        records,
        tolerance=numeric_tolerance(dtype, tolerance_scale),
        tolerance_scale=tolerance_scale,
    )
    if reference_runner is None or folded_runner is None:
        result.numeric_skipped = "no runtime for this model format"
        return result
    try:
        if len(original) > LOCAL_NODES and "onnx_model" in folded.extras:
            verify_per_fold(result, original, folded, input_shapes, seed)
        else:
            _numeric(result, reference_runner, folded_runner, input_shapes, seed)
    except RunnerUnavailable as error:
        result.numeric_skipped = str(error)
    return result


def _output_dtype(graph: ModelGraph) -> str:
    for name in graph.graph_outputs:
        dtype = graph.dtype(name)
        if dtype:
            return dtype
    return "float32"


def _declared(runner: Any, probes: Sequence[str]) -> list[str]:
    declared = getattr(runner, "declared_outputs", None)
    if declared is not None:
        return list(declared)
    return [name for name in runner.output_names if name not in probes]


def _numeric(
    result: Verification,
    reference_runner: RunnerFactory,
    folded_runner: RunnerFactory,
    input_shapes: Mapping[str, Sequence[int]] | None,
    seed: int,
) -> None:
    from bnlint.runtime_onnx import make_feeds

    probed = [
        index
        for index, r in enumerate(result.records)
        if r.status == "folded" and r.ref_tensors and r.new_tensors
    ]
    ref_names = [name for i in probed for name in result.records[i].ref_tensors]
    new_names = [name for i in probed for name in result.records[i].new_tensors]
    reference = reference_runner(ref_names)
    folded = folded_runner(new_names)
    feeds = make_feeds(reference.inputs, input_shapes, batch=2, seed=seed)
    ref_values = dict(zip(reference.output_names, reference.run(feeds), strict=True))
    new_values = dict(zip(folded.output_names, folded.run(feeds), strict=True))
    ref_values.update(feeds)
    new_values.update(feeds)
    result.numeric_ran = True
    ref_outputs = _declared(reference, ref_names)
    new_outputs = _declared(folded, new_names)
    pairs = (
        list(zip(ref_outputs, ref_outputs, strict=True))
        if set(ref_outputs) == set(new_outputs)
        else list(zip(ref_outputs, new_outputs, strict=False))
    )
    result.outputs = [tensor_error(ref, ref_values[ref], new_values[new]) for ref, new in pairs]
    for index in probed:
        record = result.records[index]
        (ref_in, ref_out), (new_in, new_out) = record.ref_tensors, record.new_tensors
        if ref_out not in ref_values or new_out not in new_values:
            continue
        out_error = tensor_error(ref_out, ref_values[ref_out], new_values[new_out])
        tolerance = numeric_tolerance(out_error.dtype, result.tolerance_scale)
        in_error = None
        if ref_in in ref_values and new_in in new_values:
            in_error = tensor_error(ref_in, ref_values[ref_in], new_values[new_in])
        upstream = in_error is not None and in_error.rel > tolerance
        ok = None if upstream else out_error.rel <= tolerance
        numeric = NumericResult(ok, in_error, out_error, tolerance)
        problem = record.problem
        if ok is False and problem is None:
            problem = (
                f"the folded output differs by {out_error.max_abs:.3g} "
                f"({out_error.rel:.3g} of its magnitude {out_error.max_ref:.3g}; tolerance "
                f"{tolerance:.2g}) although its input agrees: the fold loses precision here"
            )
        result.records[index] = replace(record, numeric=numeric, problem=problem)


def onnx_runners(reference: Any, folded: Any, reference_arrays=None, folded_arrays=None):
    from bnlint.runtime_onnx import OnnxRunner

    def reference_runner(names: Sequence[str]) -> OnnxRunner:
        return OnnxRunner(reference, extra_outputs=names, arrays=reference_arrays)

    def folded_runner(names: Sequence[str]) -> OnnxRunner:
        return OnnxRunner(folded, extra_outputs=names, arrays=folded_arrays)

    return reference_runner, folded_runner
