"""Findings, severities and the per-model result every reporter renders."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | Severity) -> Severity:
        if isinstance(value, Severity):
            return value
        try:
            return cls[str(value).upper()]
        except KeyError:
            raise ValueError(
                f"unknown severity {value!r} (expected error, warning or info)"
            ) from None


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found in one model. Everything reporters need, nothing they must compute."""

    code: str
    name: str
    severity: Severity
    message: str
    node: str | None = None
    scope: str | None = None
    op: str | None = None
    location: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)
    fix: str | None = None
    url: str | None = None
    order: int = -1  # graph order of the node; -1 for model-level findings
    baseline_state: str | None = None  # "new" | "unchanged" when run against a baseline
    # The code of the rule that reports this finding's root cause ("cannot be folded: it
    # runs in training mode" is caused by BN003): the engine drops the finding when that
    # rule reports the same node, so no finding repeats another's cause.
    cause: str | None = None

    @property
    def node_key(self) -> str:
        """The node identifier used for ignores and baselines: module path, else node name."""
        return self.scope or self.node or ""

    def sort_key(self) -> tuple[int, int, str, str]:
        return (-int(self.severity), self.order, self.code, self.message)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "code": self.code,
            "name": self.name,
            "severity": self.severity.label,
            "message": self.message,
            "node": self.node,
            "scope": self.scope,
            "op": self.op,
            "location": dict(self.location),
            "evidence": json_safe(self.evidence),
            "fix": self.fix,
            "url": self.url,
        }
        if self.baseline_state is not None:
            data["baseline_state"] = self.baseline_state
        return data


NONFINITE_KEY = "nonfinite"


def nonfinite_json(value: float) -> dict[str, str]:
    """JSON has no NaN or infinity: ``{"nonfinite": "nan" | "inf" | "-inf"}`` stands for one
    (documented in the JSON Schema, ``$defs/nonfinite``). An object, not a string such as
    ``"Infinity"``, so no consumer can take it for text or compare it as a number."""
    if math.isnan(value):
        return {NONFINITE_KEY: "nan"}
    return {NONFINITE_KEY: "inf" if value > 0 else "-inf"}


def nonfinite_text(value: float) -> str:
    """A NaN or infinity as people read it: ``nan``, ``inf``, ``-inf``."""
    return str(nonfinite_json(value)[NONFINITE_KEY])


def json_safe(value: Any, nonfinite: Callable[[float], Any] = nonfinite_json) -> Any:
    """Convert evidence to strict JSON: NumPy scalars to Python, NaN and infinities with
    ``nonfinite`` (by default the ``{"nonfinite": …}`` object of the JSON contract)."""
    if isinstance(value, dict):
        return {str(key): json_safe(item, nonfinite) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item, nonfinite) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_safe(value.tolist(), nonfinite)
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else nonfinite(value)
    return str(value)


@dataclass
class ReportData:
    """Per-model data some reports draw from the live graph (the HTML report's BN table,
    finding neighbourhoods and drift chart), computed by :mod:`bnlint.report.report_data` in the
    process that linted the model, as plain picklable data. None: not asked for, or it
    failed (``errors`` says why; the report renders without that part)."""

    bn_table: list[dict[str, Any]] | None = None
    neighborhood: dict[int, Any] | None = None
    drift: dict[str, Any] | None = None
    errors: dict[str, str] = field(default_factory=dict)


@dataclass
class ModelResult:
    """The outcome for one input: its findings, or why it could not be read."""

    path: str
    format: str | None = None
    status: str = "ok"  # "ok" | "error"
    error: str | None = None
    findings: list[Finding] = field(default_factory=list)
    phase: str | None = None  # the phase the rules ran for (bnlint.engine.effective_phase)
    report_data: ReportData = field(default_factory=ReportData)
    # The user's own traceback when their module:factory raised (shown above the error)
    user_traceback: str | None = None
    data_files: list[str] = field(default_factory=list)  # external data the model read
    # sha256, size, context and rules run, computed where the model was linted
    # (bnlint.evidence.provenance.model_evidence); reporters show it through Report.provenance.
    provenance: dict[str, Any] = field(default_factory=dict)
    # The verification section (bnlint.fold.report.verification_section): one verdict per
    # BN with the bound, error and margin of each level; None when no fold was verified.
    verification: dict[str, Any] | None = None
    # What was checked: the BatchNorms in the model (None: not read), and in an inference
    # graph how many of them the fold plan can fold (None: folding does not apply).
    batchnorms: int | None = None
    foldable: int | None = None

    @property
    def rules_run(self) -> list[str]:
        return list(self.provenance.get("rules_run") or [])

    def to_dict(self) -> dict[str, Any]:
        data = {
            "path": self.path,
            "format": self.format,
            "status": self.status,
            "error": self.error,
            "batchnorms": self.batchnorms,
            "foldable": self.foldable,
            "findings": [finding.to_dict() for finding in self.findings],
        }
        if self.verification is not None:
            data["verification"] = self.verification
        return data


@dataclass
class Report:
    models: list[ModelResult] = field(default_factory=list)
    # The run's rules by code (bnlint.rule.Rule, plug-ins included), set by the API
    # (bnlint.api.finish_report) so reporters document findings without loading them again.
    rules: dict[str, Any] | None = None
    # Set by --baseline (bnlint.report.baseline): the baseline file, counts of new and
    # unchanged findings, and the baseline entries no longer found ("fixed").
    baseline: dict[str, Any] | None = None
    # What a reviewer needs to reproduce the run (bnlint.evidence.provenance.collect): file hashes,
    # versions, resolved configuration, rules and options, command line, time.
    provenance: dict[str, Any] | None = None

    @property
    def findings(self) -> list[Finding]:
        return [finding for model in self.models for finding in model.findings]

    @property
    def unreadable(self) -> list[ModelResult]:
        return [model for model in self.models if model.status == "error"]

    def counts_by_severity(self) -> dict[str, int]:
        counts = {severity.label: 0 for severity in sorted(Severity, reverse=True)}
        for finding in self.findings:
            counts[finding.severity.label] += 1
        return counts

    def counts_by_code(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for finding in sorted(self.findings, key=lambda f: f.code):
            counts[finding.code] = counts.get(finding.code, 0) + 1
        return counts

    def exit_code(self, fail_on: str) -> int:
        """0: nothing at or above ``fail_on``; 1: findings at or above it; 2: unreadable input.

        Findings already in the baseline (``baseline_state == "unchanged"``) never fail.
        """
        if self.unreadable:
            return 2
        if fail_on == "never":
            return 0
        threshold = Severity.parse(fail_on)
        gating = (f for f in self.findings if f.baseline_state != "unchanged")
        return 1 if any(f.severity >= threshold for f in gating) else 0
