"""What verification found over one model: per-BN records, model outputs, the verdict.

Plain data shared by both verification levels, the fold engine and the audit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bnlint.fold.bounds import Check
from bnlint.fold.verdicts import FoldRecord


class FoldError(Exception):
    """The model cannot be folded or audited at all; one line for the user."""


@dataclass
class Verification:
    """Both levels over all folds of one model."""

    records: list[FoldRecord]
    outputs: list[Check] = field(default_factory=list)  # model outputs, original vs folded
    # Changed parts of the model that hold no BatchNorm and compute something else now,
    # when no fold explains them (one line each).
    unexplained: list[str] = field(default_factory=list)
    algebraic_ran: bool = False
    numeric_ran: bool = False
    numeric_skipped: str | None = None
    outputs_skipped: str | None = None
    outputs_by: str | None = None  # the runtime that ran the whole models
    tolerance_scale: float = 1.0
    probes: list[str] = field(default_factory=list)  # how the model outputs were probed

    @property
    def wrong(self) -> list[FoldRecord]:
        return [record for record in self.records if record.problem is not None]

    @property
    def failed_outputs(self) -> list[Check]:
        return [check for check in self.outputs if not check.ok]

    @property
    def worst_output(self) -> Check | None:
        return min(self.outputs, key=lambda check: check.margin, default=None)

    @property
    def ok(self) -> bool:
        return not self.wrong and not self.failed_outputs and not self.unexplained


@dataclass
class FoldResult:
    verification: Verification
    folded: Any  # onnx.ModelProto or nn.Module
    format: str

    @property
    def records(self) -> list[FoldRecord]:
        return self.verification.records
