"""Verification results as findings and as the verification section of every report.

One verdict per BN goes into the *verification section* (:func:`verification_section`:
the JSON ``verification`` block of each model, the HTML and text tables). Findings are
kept for what needs attention: BN012 (``fold-mismatch``) means a wrong fold and nothing
else; a BN whose fold could not be checked (``unmatched``/``unverified``) is a BN905
warning naming why; model outputs or changed parts no fold explains are BN012 too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from bnlint.findings import Finding, Severity, json_safe
from bnlint.fold import bounds
from bnlint.fold.results import Verification
from bnlint.fold.verdicts import KIND_LABEL, FoldRecord
from bnlint.rule import RuleContext

FIX = (
    "fold with a tool that handles this layout (`bnlint fold MODEL -o FOLDED` verifies its "
    "result), or keep this BN unfolded"
)
VERDICTS = ("folded-correctly", "folded-wrongly", "not-folded", "unmatched", "unverified")


def verdict_of(record: FoldRecord) -> str:
    """folded-correctly | folded-wrongly | not-folded | unmatched | unverified."""
    if record.problem is not None:
        return "folded-wrongly"
    if record.status == "not-folded":
        return "not-folded"
    if record.status in ("unmatched", "removed"):
        return "unmatched"
    if record.algebraic is None:
        return "unverified"
    return "folded-correctly"


def _into(record: FoldRecord) -> str | None:
    if record.target_name is None and record.target_op is None:
        label = KIND_LABEL.get(record.verdict.kind or "")
        producer = record.verdict.producer
        return f"{label} {producer.display_name}" if label and producer else None
    return " ".join(part for part in (record.target_op, record.target_name) if part)


def record_row(record: FoldRecord) -> dict[str, Any]:
    """One BN's row of the verification section."""
    bn = record.bn
    row: dict[str, Any] = {
        "bn": bn.display_name,
        "scope": bn.scope,
        "verdict": verdict_of(record),
        "status": record.status,
        "kind": record.verdict.kind,
        "into": _into(record) if record.status == "folded" else None,
        "matched_by": record.matched_by,
        "reason_code": record.reason_code,
        "reason": record.reason,
        "problem_code": record.problem_code,
        "problem": record.problem,
        "algebraic": record.algebraic.evidence() if record.algebraic is not None else None,
        "numeric": record.numeric.evidence() if record.numeric is not None else None,
    }
    return row


def verification_section(verification: Verification) -> dict[str, Any]:
    """The verification block of a model's report (plain, JSON-safe data)."""
    return json_safe(
        {
            "ok": verification.ok,
            "levels": {
                "algebraic": verification.algebraic_ran,
                "numeric": verification.numeric_ran,
                "numeric_skipped": verification.numeric_skipped,
                "outputs_skipped": verification.outputs_skipped,
                "outputs_by": verification.outputs_by,
            },
            "criteria": {
                "algebraic": bounds.ALGEBRAIC_CRITERION,
                "numeric": bounds.NUMERIC_CRITERION,
                "outputs": bounds.OUTPUT_CRITERION,
                "tolerance_scale": verification.tolerance_scale,
            },
            "bns": [record_row(record) for record in verification.records],
            "outputs": [{**check.evidence(), "ok": check.ok} for check in verification.outputs],
            "probes": list(verification.probes),
            "unexplained": list(verification.unexplained),
        }
    )


def _name(record: FoldRecord) -> str:
    return f"{record.bn.source_op} {record.bn.display_name!r}"


def record_findings(verification: Verification, ctx: RuleContext) -> Iterator[Finding]:
    """BN012 for every wrong fold (and unexplained change); BN905 for unchecked folds."""
    for record in verification.records:
        verdict = verdict_of(record)
        evidence = json_safe(record_row(record))
        if verdict == "folded-wrongly":
            into = _into(record)
            where = f" into {into}" if into and record.status == "folded" else ""
            yield ctx.finding(
                record.bn,
                f"{_name(record)} folded wrongly{where}: {record.problem}",
                evidence=evidence,
                fix=FIX,
                severity=Severity.ERROR,
            )
        elif verdict in ("unmatched", "unverified"):
            why = record.reason or "its fold could not be checked"
            finding = ctx.diagnostic(
                "BN905",
                record.bn,
                f"{_name(record)} was removed but its fold could not be verified: {why}",
                evidence=evidence,
            )
            yield replace(finding, severity=Severity.WARNING)
    for line in verification.unexplained:
        yield ctx.finding(None, f"after folding, {line}", evidence={}, fix=FIX)
    if any(record.problem for record in verification.records) or verification.unexplained:
        return
    for check in verification.failed_outputs:
        yield ctx.finding(
            None,
            f"after folding, output {check.tensor!r} differs by {check.error:.3g} (bound "
            f"{check.bound:.3g}: {bounds.OUTPUT_FACTOR:g} times what a null fold changes) and "
            "no single fold explains it",
            evidence=json_safe({"verdict": "outputs-differ", **check.evidence()}),
            fix=FIX,
        )


def verification_findings(verification: Verification, ctx: RuleContext) -> list[Finding]:
    """:func:`record_findings`, plus a BN905 note when the numeric level could not run."""
    findings = list(record_findings(verification, ctx))
    if verification.numeric_skipped:
        findings.append(
            ctx.diagnostic(
                "BN905",
                None,
                f"numeric verification skipped ({verification.numeric_skipped}); "
                "algebraic level only",
            )
        )
    return findings
