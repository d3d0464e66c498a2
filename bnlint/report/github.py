"""GitHub workflow commands (``--format github``): annotations on the pull request.

One line per finding, ``::error file=…,title=…::message``; info findings are notices.
Model strings are escaped as the Actions toolkit does, so a node name can never start a
new command (newlines become ``%0A``).
"""

from __future__ import annotations

from bnlint.findings import Finding, Report
from bnlint.report import RenderOptions
from bnlint.report.baseline import relative_model_path
from bnlint.report.sanitize import printable
from bnlint.report.text import summary_line

COMMANDS = {"error": "error", "warning": "warning", "info": "notice"}


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, path: str, title: str, message: str) -> str:
    properties = f"file={escape_property(path)},title={escape_property(title)}"
    return f"::{level} {properties}::{escape_data(message)}"


def _message(finding: Finding) -> str:
    # printable(): ANSI and bidi control characters from a model never reach the CI log raw.
    where = printable(finding.scope or finding.node or "")
    text = printable(finding.message, 2000)
    text = f"{where}: {text}" if where else text
    if finding.fix:
        text += f"\nFix: {printable(finding.fix, 2000)}"
    if finding.baseline_state == "unchanged":
        text += "\n(in the baseline)"
    if finding.url:
        text += f"\nDocs: {finding.url}"
    return text


def render(report: Report, options: RenderOptions) -> str:
    lines = []
    for model in report.models:
        path = relative_model_path(model.path)
        if model.status != "ok":
            problem = printable(model.error or "", 2000)
            lines.append(annotation("error", path, "bnlint: unreadable model", problem))
            continue
        for finding in model.findings:
            title = f"{finding.code} {finding.name}"
            lines.append(
                annotation(COMMANDS[finding.severity.label], path, title, _message(finding))
            )
    lines.append(summary_line(report))
    return "\n".join(lines) + "\n"
