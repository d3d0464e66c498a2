"""Reporters: every output format renders the same Report, findings in the same order."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from bnlint.findings import Report

# format -> module in bnlint.report exposing render(report, options) -> str
REPORTERS = {
    "text": "text",
    "json": "json_report",
}


@dataclass
class RenderOptions:
    color: bool = False
    quiet: bool = False
    statistics: bool = False
    fail_on: str = "warning"
    docs_url: str = ""
    command: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def available_formats() -> list[str]:
    return list(REPORTERS)


def render(report: Report, fmt: str, options: RenderOptions) -> str:
    """Render ``report`` in ``fmt``; reporter modules import only when used."""
    if fmt not in REPORTERS:
        raise ValueError(f"unknown format {fmt!r}")
    module = importlib.import_module(f"bnlint.report.{REPORTERS[fmt]}")
    return module.render(report, options)
