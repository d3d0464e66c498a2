"""Reporters: every output format renders the same Report, findings in the same order."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bnlint.findings import Report

# format -> module in bnlint.report exposing render(report, options) -> str
REPORTERS = {
    "text": "text",
    "json": "json_report",
    "sarif": "sarif",
    "github": "github",
    "gitlab": "gitlab",
    "junit": "junit",
    "markdown": "markdown",
    "html": "html",
}

# Per-model data a format needs from the live graph, computed in the (worker) process that
# linted the model and stored in ModelResult.report_data (see bnlint.report.report_data).
EXTRAS_BY_FORMAT: dict[str, tuple[str, ...]] = {"html": ("bn_table", "neighborhood", "drift")}


@dataclass
class RenderOptions:
    color: bool = False
    quiet: bool = False
    statistics: bool = False
    show_known: bool = False  # with --baseline: also list findings already in the baseline
    fail_on: str = "warning"
    docs_url: str = ""
    command: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    # code -> bnlint.rule.Rule (the run's RuleSet.rules); None loads the installed rules
    rules: Mapping[str, Any] | None = None


def extras_for(formats: Iterable[str]) -> tuple[str, ...]:
    """The report data (``ModelResult.report_data``) the given output formats need, by
    name, without duplicates."""
    names = [name for fmt in formats for name in EXTRAS_BY_FORMAT.get(fmt, ())]
    return tuple(dict.fromkeys(names))


def render(report: Report, fmt: str, options: RenderOptions) -> str:
    """Render ``report`` in ``fmt``; reporter modules import only when used."""
    if fmt not in REPORTERS:
        raise ValueError(f"unknown format {fmt!r}")
    module = importlib.import_module(f"bnlint.report.{REPORTERS[fmt]}")
    return module.render(report, options)
