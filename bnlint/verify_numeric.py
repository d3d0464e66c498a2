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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bnlint.fold import FoldRecord
from bnlint.graph import ModelGraph
from bnlint.runtime import RunnerUnavailable
from bnlint.verify import check_algebra, unit_roundoff
from bnlint.verify_batch import batch_conv_algebra

FLOAT32_TOLERANCE = 2e-6
# Above this many nodes the numeric level runs each fold on its own (bnlint.verify_local):
# ONNX Runtime's session cost grows faster than linearly with the size of the graph.
LOCAL_NODES = 4096


def numeric_tolerance(dtype: str | None, scale: float = 1.0) -> float:
    """Allowed ``max |error| / max |reference|`` for tensors of ``dtype``."""
    roundoff = unit_roundoff(dtype if dtype in ("float16", "bfloat16", "float64") else "float32")
    return scale * FLOAT32_TOLERANCE * roundoff / unit_roundoff("float32")


@dataclass(frozen=True)
class TensorError:
    name: str
    max_abs: float
    max_ref: float
    dtype: str

    @property
    def rel(self) -> float:
        if self.max_abs == 0:
            return 0.0
        return self.max_abs / self.max_ref if self.max_ref > 0 else float("inf")

    def evidence(self) -> dict[str, Any]:
        return {
            "tensor": self.name,
            "max_abs_error": self.max_abs,
            "max_abs_reference": self.max_ref,
            "max_rel_error": self.rel,
        }


def tensor_error(name: str, reference: np.ndarray, actual: np.ndarray) -> TensorError:
    reference, actual = np.asarray(reference), np.asarray(actual)
    dtype = reference.dtype.name
    if reference.shape != actual.shape:
        return TensorError(name, float("inf"), 0.0, dtype)
    if reference.dtype.kind == "f" and actual.dtype.kind == "f":
        # All finite (the usual case): the same numbers without the masking passes.
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(np.subtract(reference, actual, dtype=np.float64))
        if np.isfinite(diff).all() and np.isfinite(reference).all():
            largest = float(np.abs(reference).max(initial=0.0))
            return TensorError(name, float(diff.max(initial=0.0)), largest, dtype)
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(actual, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(ref - got)
    same = (ref == got) | (np.isnan(ref) & np.isnan(got))
    diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))
    finite = np.abs(ref[np.isfinite(ref)])
    return TensorError(name, float(diff.max(initial=0.0)), float(finite.max(initial=0.0)), dtype)


@dataclass(frozen=True)
class NumericResult:
    """Level-2 verdict for one fold. ``ok`` is None when the error comes from upstream."""

    ok: bool | None
    input_error: TensorError | None
    output_error: TensorError
    tolerance: float

    def evidence(self) -> dict[str, Any]:
        return {
            "bn_output_error": self.output_error.max_abs,
            "bn_output_rel_error": self.output_error.rel,
            "bn_input_rel_error": self.input_error.rel if self.input_error else 0.0,
            "numeric_tolerance": self.tolerance,
        }


@dataclass
class Verification:
    """Both levels over all folds of one model."""

    records: list[FoldRecord]
    outputs: list[TensorError] = field(default_factory=list)
    tolerance: float = FLOAT32_TOLERANCE
    numeric_ran: bool = False
    numeric_skipped: str | None = None
    tolerance_scale: float = 1.0
    # "model": both models ran end to end; "per-fold": each fold ran on its own (large
    # graphs, see bnlint.verify_local), with no end-to-end comparison of the outputs.
    numeric_scope: str = "model"

    @property
    def wrong(self) -> list[FoldRecord]:
        return [record for record in self.records if record.problem is not None]

    @property
    def failed_outputs(self) -> list[TensorError]:
        return [out for out in self.outputs if out.rel > self.tolerance]

    @property
    def worst_output(self) -> TensorError | None:
        return max(self.outputs, key=lambda out: out.rel, default=None)

    @property
    def ok(self) -> bool:
        return not self.wrong and not self.failed_outputs

    def output_evidence(self) -> dict[str, Any]:
        worst = self.worst_output
        if worst is None:
            return {"numeric": self.numeric_ran}
        return {
            "numeric": self.numeric_ran,
            "worst_output": worst.name,
            "max_abs_error": worst.max_abs,
            "max_rel_error": worst.rel,
            "tolerance": self.tolerance,
            "min_tolerance": {"rtol_of_max": worst.rel, "atol": worst.max_abs},
        }


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
            from bnlint.verify_local import verify_per_fold

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
