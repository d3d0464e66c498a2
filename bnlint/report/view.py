"""The view of a Report that the Markdown and HTML templates share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from bnlint._resources import data_dir
from bnlint._version import __version__
from bnlint.findings import Finding, ModelResult, Report, Severity
from bnlint.report import RenderOptions

SEVERITIES = [severity.label for severity in sorted(Severity, reverse=True)]


@dataclass
class ModelView:
    index: int
    anchor: str
    path: str
    format: str | None
    status: str
    error: str | None
    counts: dict[str, int]
    result: ModelResult
    findings: list[FindingView] = field(default_factory=list)


@dataclass
class FindingView:
    index: int
    model: ModelView
    finding: Finding

    @property
    def where(self) -> str:
        return self.finding.scope or self.finding.node or ""


def verdict(report: Report, fail_on: str) -> dict[str, Any]:
    code = report.exit_code(fail_on)
    if code == 2:
        detail = "some models could not be read"
    elif code == 1:
        new = " new" if report.baseline is not None else ""
        detail = f"{new} findings at or above {fail_on}".strip()
    elif fail_on == "never":
        detail = "the gate is off (fail-on never)"
    else:
        detail = f"no{' new' if report.baseline is not None else ''} findings at or above {fail_on}"
    headline = "failed" if code else "passed"
    return {"failed": code != 0, "headline": headline, "detail": detail, "exit_code": code}


def model_views(report: Report) -> list[ModelView]:
    views = []
    position = 0
    for index, model in enumerate(report.models):
        counts = dict.fromkeys(SEVERITIES, 0)
        for finding in model.findings:
            counts[finding.severity.label] += 1
        view = ModelView(
            index=index,
            anchor=f"model-{index + 1}",
            path=model.path,
            format=model.format,
            status=model.status,
            error=model.error,
            counts=counts,
            result=model,
        )
        for finding in model.findings:
            view.findings.append(FindingView(position, view, finding))
            position += 1
        views.append(view)
    return views


def base_context(report: Report, options: RenderOptions) -> dict[str, Any]:
    models = model_views(report)
    return {
        "version": __version__,
        "verdict": verdict(report, options.fail_on),
        "fail_on": options.fail_on,
        "counts": report.counts_by_severity(),
        "total": len(report.findings),
        "models": models,
        "findings": [view for model in models for view in model.findings],
        "unreadable": [model for model in models if model.status != "ok"],
        "baseline": report.baseline,
        "severities": SEVERITIES,
        "command": " ".join(options.command),
    }


def environment(autoescape: bool) -> Environment:
    """Templates from ``bnlint/templates``; every undefined name is an error."""
    return Environment(
        loader=FileSystemLoader(str(data_dir("templates"))),
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def short_path(path: str) -> str:
    """A model path as people read it: relative to the working directory when inside it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop on Python 3.10
        return path
