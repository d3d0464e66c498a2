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
from bnlint.report.groups import FindingGroup, group_findings

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
    groups: list[GroupView] = field(default_factory=list)


@dataclass
class FindingView:
    index: int
    model: ModelView
    finding: Finding

    @property
    def where(self) -> str:
        return self.finding.scope or self.finding.node or ""


@dataclass
class GroupView:
    """One group of findings (one rule, one message template, one model) as a row."""

    index: int
    model: ModelView
    group: FindingGroup
    items: list[FindingView]

    @property
    def first(self) -> FindingView:
        return self.items[0]

    @property
    def finding(self) -> Finding:
        return self.group.first

    @property
    def count(self) -> int:
        return self.group.count

    @property
    def where(self) -> str:
        return self.first.where

    @property
    def state(self) -> str | None:
        """``new`` or ``known`` with a baseline (a group is known when all of it is)."""
        if self.finding.baseline_state is None:
            return None
        return "known" if self.group.known else "new"


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
    _add_groups(views)
    return views


def _add_groups(models: list[ModelView]) -> None:
    """Each model's findings as groups, new ones first (a stable sort: report order kept)."""
    index = 0
    for model in models:
        by_finding = {id(item.finding): item for item in model.findings}
        groups = []
        for group in group_findings(item.finding for item in model.findings):
            items = [by_finding[id(finding)] for finding in group.findings]
            groups.append(GroupView(index, model, group, items))
            index += 1
        model.groups = sorted(groups, key=lambda view: view.state == "known")


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
        "groups": sorted(
            (group for model in models for group in model.groups),
            key=lambda view: view.state == "known",
        ),
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
