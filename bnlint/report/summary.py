"""The run's summary for people: what was checked, what was found, what to do next.

One sentence, the same in the terminal, GitHub's log, Markdown and HTML, and never at odds
with itself: models that could not be read are counted apart from the models checked, a
state dict says that only the parameter rules ran, a clean run names what it checked
(models, BatchNorms, rules), and foldable BatchNorms are one sentence with the command
that folds them instead of one finding per layer (BN011 is opt-in).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from bnlint.findings import Finding, Report, Severity
from bnlint.report.sanitize import printable


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural_form or noun + 's'}"


@dataclass
class Checked:
    """What a run looked at."""

    models: int = 0  # readable models
    unreadable: int = 0  # models that could not be read
    empty_folders: int = 0  # folders given that held no model file
    batchnorms: int = 0
    rules: set[str] = field(default_factory=set)
    parameter_only: int = 0  # models without a phase (bare weights): parameter rules only
    fold_candidates: int = 0  # BatchNorms in inference graphs the fold plan judged
    foldable: int = 0
    fold_paths: list[str] = field(default_factory=list)  # models the fold plan judged
    fold_models: list[str] = field(default_factory=list)  # models with a foldable BN


def checked(report: Report) -> Checked:
    seen = Checked()
    for model in report.models:
        if model.status != "ok":
            if model.format == "folder":
                seen.empty_folders += 1
            else:
                seen.unreadable += 1
            continue
        seen.models += 1
        seen.batchnorms += model.batchnorms or 0
        seen.rules.update(model.rules_run)
        if model.phase is None and model.batchnorms is not None:
            seen.parameter_only += 1
        if model.foldable is not None:
            seen.fold_candidates += model.batchnorms or 0
            seen.foldable += model.foldable
            seen.fold_paths.append(model.path)
            if model.foldable:
                seen.fold_models.append(model.path)
    return seen


def severity_counts(findings: list[Finding]) -> str:
    counts = dict.fromkeys(sorted(Severity, reverse=True), 0)
    for finding in findings:
        counts[finding.severity] += 1
    return ", ".join(
        f"{count} {severity.label}{'s' if count != 1 and severity != Severity.INFO else ''}"
        for severity, count in counts.items()
        if count
    )


def what_was_checked(seen: Checked, nested: bool = False) -> str:
    """``1 model, 53 BatchNorms, 17 rules`` (``nested``: ``1 model (53 BatchNorms, 17
    rules)``); a BN-free model says so."""
    batchnorms = plural(seen.batchnorms, "BatchNorm") if seen.batchnorms else "no BatchNorm"
    rules = plural(len(seen.rules), "rule")
    if seen.parameter_only and seen.parameter_only == seen.models:
        rules = f"{plural(len(seen.rules), 'parameter rule')} only"  # BN901 says what else
    elif seen.parameter_only:
        rules += f"; parameter rules only for {plural(seen.parameter_only, 'state dict')}"
    if nested:
        return f"{plural(seen.models, 'model')} ({batchnorms}, {rules})"
    return f"{plural(seen.models, 'model')}, {batchnorms}, {rules}"


def _model_argument(paths: list[str]) -> str:
    return shlex.quote(paths[0]) if len(paths) == 1 else "MODEL"


def fold_command(seen: Checked) -> str:
    """The command that folds: concrete for one ONNX file, generic otherwise."""
    if len(seen.fold_models) == 1 and seen.fold_models[0].endswith(".onnx"):
        path = seen.fold_models[0]
        folded = str(Path(path).with_name(Path(path).stem + "-folded.onnx"))
        return f"`bnlint fold {shlex.quote(path)} -o {shlex.quote(folded)}`"
    return f"`bnlint fold {_model_argument(seen.fold_models)} -o FOLDED`"


def fold_sentence(seen: Checked) -> str | None:
    """``53 of 53 BatchNorms can be folded: bnlint fold …`` (inference graphs with at least
    one foldable BatchNorm)."""
    if not seen.fold_candidates:
        return None
    total, foldable = seen.fold_candidates, seen.foldable
    if not foldable:  # nothing to do; why not is in --select BN011 or in the findings
        return None
    why = f"`bnlint fold {_model_argument(seen.fold_paths)} --dry-run` or `--select BN011`"
    text = f"{foldable} of {plural(total, 'BatchNorm')} can be folded: {fold_command(seen)}"
    if total > foldable:
        text += f" ({why} says why {total - foldable} cannot)"
    return printable(text, None)


def _input_problems(seen: Checked) -> str:
    parts = []
    if seen.unreadable:
        parts.append(f"{plural(seen.unreadable, 'model')} could not be read")
    if seen.empty_folders:
        parts.append(f"{plural(seen.empty_folders, 'folder')} held no model file")
    return "; ".join(parts)


def summary_line(report: Report, shown: list[Finding] | None = None) -> str:
    """The one-line verdict; ``shown`` are the findings listed (default: all)."""
    seen = checked(report)
    listed = report.findings if shown is None else shown
    known = len(report.findings) - len(listed) if report.baseline is not None else 0
    new = " new" if report.baseline is not None else ""
    problems = _input_problems(seen)
    if not seen.models:
        return f"Nothing checked: {problems or 'no model files'}."
    scope = what_was_checked(seen, nested=bool(listed) or bool(problems))
    if listed and new:  # --show-known lists known findings too: count them apart
        fresh = [finding for finding in listed if finding.baseline_state != "unchanged"]
        also = plural(len(listed) - len(fresh), "known finding")
        if not fresh:
            text = f"Found no new findings and {also} in {scope}."
        else:
            text = f"Found {plural(len(fresh), 'new finding')} ({severity_counts(fresh)})"
            text += f" and {also} in {scope}." if len(fresh) < len(listed) else f" in {scope}."
    elif listed:
        text = f"Found {plural(len(listed), 'finding')} ({severity_counts(listed)}) in {scope}."
    elif problems:
        text = f"No{new} findings in {scope}."
    else:
        text = f"All checks passed{' (nothing new)' if new else ''}: {scope}."
    if problems:
        text += f" Not checked: {problems}."
    if known:
        text += (
            f" {plural(known, 'known finding')} in the baseline not shown (--show-known lists "
            f"{'it' if known == 1 else 'them'})."
        )
    return text


def summary_lines(report: Report, shown: list[Finding] | None = None) -> list[str]:
    """The summary line, then the fold sentence: on the same line for a clean run."""
    line = summary_line(report, shown)
    fold = fold_sentence(checked(report))
    if fold is None:
        return [line]
    if line.startswith("All checks passed"):
        return [f"{line} {fold}"]
    return [line, fold]
