"""Verification results as findings (BN012) and as the per-BN fold table.

Shared by the BN012 rule (``check --verify``: failing folds only), ``bnlint fold`` (the
table, and BN012 findings when a fold fails) and ``bnlint verify --against`` (one
verdict per BN of the original: folded correctly, folded wrongly, not folded, unmatched).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bnlint.findings import Finding, Severity
from bnlint.fold.results import Verification
from bnlint.fold.verdicts import KIND_LABEL, FoldRecord
from bnlint.report.sanitize import printable
from bnlint.rule import RuleContext

FIX = (
    "fold with a tool that handles this layout (`bnlint fold MODEL -o FOLDED` verifies its "
    "result), or keep this BN unfolded"
)


def verdict_of(record: FoldRecord) -> str:
    """folded-correctly | folded-wrongly | not-folded | unmatched | unverified."""
    if record.problem is not None:
        return "folded-wrongly"
    if record.status == "not-folded":
        return "not-folded"
    if record.status in ("unmatched", "removed"):
        return "unmatched"
    if record.algebra is None and record.numeric is None:
        return "unverified"
    return "folded-correctly"


def record_evidence(record: FoldRecord, verification: Verification) -> dict[str, Any]:
    verdict = record.verdict
    evidence: dict[str, Any] = {
        "verdict": verdict_of(record),
        "status": record.status,
        "kind": verdict.kind,
        "target": record.target_name,
        "matched_by": record.matched_by,
        "reason_code": record.reason_code,
        "problem": getattr(record.algebra, "problem_code", None) if record.problem else None,
    }
    level = None
    if record.algebra is not None:
        evidence.update(record.algebra.evidence())
        if not record.algebra.ok:
            level = "algebraic"
            evidence["min_tolerance"] = record.algebra.evidence()["min_tolerance"]
    if record.numeric is not None:
        numeric = record.numeric.evidence()
        evidence.update(numeric)
        evidence["max_abs_error"] = record.numeric.output_error.max_abs
        evidence["max_rel_error"] = record.numeric.output_error.rel
        if record.numeric.ok is False and level is None:
            level = "numeric"
            evidence["problem"] = "numeric-mismatch"
            evidence["min_tolerance"] = record.numeric.output_error.rel
    if record.problem is not None and level is None:
        level = "structure"
        evidence["problem"] = record.reason_code
    evidence["level"] = level
    worst = verification.worst_output
    if worst is not None:
        evidence["worst_output"] = worst.name
        evidence["output_max_abs_error"] = worst.max_abs
        evidence["output_max_rel_error"] = worst.rel
    evidence["numeric_ran"] = verification.numeric_ran
    if verification.numeric_scope != "model":
        evidence["numeric_scope"] = verification.numeric_scope  # each fold run on its own
    return evidence


def _describe(record: FoldRecord) -> tuple[str, Severity]:
    bn = record.bn
    name = f"{bn.source_op} {bn.display_name!r}"
    target = (
        f"{record.target_op or KIND_LABEL.get(record.verdict.kind or '', '?')} "
        f"{record.target_name!r}"
    )
    verdict = verdict_of(record)
    if verdict == "folded-wrongly":
        if record.status == "removed":
            return f"{name} was folded away wrongly: {record.problem}", Severity.ERROR
        return f"{name} folded wrongly into {target}: {record.problem}", Severity.ERROR
    if verdict == "unmatched":
        why = record.reason or "no matching node"
        return (
            f"{name} was removed but its fold could not be verified: {why}",
            Severity.WARNING,
        )
    if verdict == "not-folded":
        return f"{name} not folded: {record.reason}", Severity.INFO
    if verdict == "unverified":
        return f"{name} folded into {target} (not verified)", Severity.WARNING
    detail = ""
    if record.numeric is not None:
        detail = f", output error {record.numeric.output_error.rel:.2g} of its magnitude"
    weight = record.algebra.weight_error if record.algebra is not None else float("nan")
    return (
        f"{name} folded correctly into {target} (weight error {weight:.2g}{detail})",
        Severity.INFO,
    )


def record_findings(
    verification: Verification, ctx: RuleContext, *, every_bn: bool = False
) -> Iterator[Finding]:
    """BN012 findings: the wrong (and unmatched) folds, or every BN's verdict."""
    for record in verification.records:
        if not every_bn and verdict_of(record) != "folded-wrongly":
            continue
        message, severity = _describe(record)
        yield ctx.finding(
            record.bn,
            message,
            evidence=record_evidence(record, verification),
            fix=FIX if severity >= Severity.WARNING else None,
            severity=severity,
        )
    explained = any(record.problem for record in verification.records)
    for output in verification.failed_outputs:
        if explained:
            break
        yield ctx.finding(
            None,
            f"after folding, output {output.name!r} differs by {output.max_abs:.3g} "
            f"({output.rel:.3g} of its magnitude; tolerance {verification.tolerance:.2g}) "
            "and no single fold explains it",
            evidence={"verdict": "outputs-differ", **verification.output_evidence()},
            fix=FIX,
        )


def fold_table(verification: Verification) -> list[dict[str, Any]]:
    """One row per BN: name, verdict, target or reason, errors."""
    rows = []
    for record in verification.records:
        bn = record.bn
        if verdict_of(record) in ("folded-correctly", "folded-wrongly", "unverified"):
            into = f"{record.target_op} {record.target_name}"
        else:
            into = f"({record.reason_code}) {record.reason}"
        rows.append(
            {
                "bn": bn.display_name,
                "verdict": verdict_of(record),
                "into": into,
                "weight_error": getattr(record.algebra, "weight_error", None),
                "output_error": record.numeric.output_error.rel if record.numeric else None,
                "problem": record.problem,
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The fold table as aligned text."""
    if not rows:
        return "no BatchNormalization in the model\n"
    rows = [  # names come from the model: shown escaped, one table line per row
        {**row, **{key: printable(row[key], None) for key in ("bn", "into", "problem") if row[key]}}
        for row in rows
    ]
    width = max(len(row["bn"]) for row in rows)
    lines = [f"{'BN':<{width}}  {'verdict':<16}  into / why not"]
    for row in rows:
        errors = ""
        if row["weight_error"] is not None:
            errors = f"  [weight {row['weight_error']:.1e}"
            if row["output_error"] is not None:
                errors += f", output {row['output_error']:.1e}"
            errors += "]"
        lines.append(f"{row['bn']:<{width}}  {row['verdict']:<16}  {row['into']}{errors}")
        if row["problem"]:
            lines.append(f"{'':<{width}}  {'':<16}  ! {row['problem']}")
    return "\n".join(lines) + "\n"
