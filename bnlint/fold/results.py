"""What verification found: per-tensor errors, per-fold results, the verdict over a model.

Plain data shared by both verification levels, the fold engine and the audit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnlint.fold.verdicts import FoldRecord
from bnlint.reference import unit_roundoff

FLOAT32_TOLERANCE = 2e-6
# Above this many nodes the numeric level runs each fold on its own (bnlint.fold.local):
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
    # graphs, see bnlint.fold.local), with no end-to-end comparison of the outputs.
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


class FoldError(Exception):
    """The model cannot be folded at all (format, unreadable data); one line for the user."""


@dataclass
class FoldResult:
    verification: Verification
    folded: Any  # onnx.ModelProto or nn.Module
    format: str

    @property
    def records(self):
        return self.verification.records
