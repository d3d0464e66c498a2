"""GitHub workflow commands (``--format github``): annotations on the pull request.

One line per group of findings (one rule, one message template, one model: see
:mod:`bnlint.report.groups`), ``::error file=…,title=…::message``, naming the layers of
the group; info findings are notices. With ``--baseline`` only new findings are annotated
(``--show-known`` adds the others), so an accepted finding is not re-annotated on every
run. Model strings are escaped as the Actions toolkit does, so a node name can never
start a new command (newlines become ``%0A``).
"""

from __future__ import annotations

from bnlint.findings import Report
from bnlint.report import RenderOptions
from bnlint.report.baseline import relative_model_path
from bnlint.report.groups import FindingGroup, group_findings, shown_findings
from bnlint.report.sanitize import printable
from bnlint.report.summary import summary_lines

COMMANDS = {"error": "error", "warning": "warning", "info": "notice"}


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def annotation(level: str, path: str, title: str, message: str) -> str:
    properties = f"file={escape_property(path)},title={escape_property(title)}"
    return f"::{level} {properties}::{escape_data(message)}"


def _message(group: FindingGroup) -> str:
    # printable(): ANSI and bidi control characters from a model never reach the CI log raw.
    finding = group.first
    where = printable(finding.scope or finding.node or "")
    text = printable(finding.message, 2000)
    text = f"{where}: {text}" if where else text
    if group.count > 1:
        text += f"\nAlso at: {group.places_text(shown=20, show=printable)}"
    if finding.fix:
        text += f"\nFix: {printable(finding.fix, 2000)}"
    if finding.baseline_state == "unchanged":
        text += "\n(in the baseline)"
    if finding.url:
        text += f"\nDocs: {finding.url}"
    return text


def render(report: Report, options: RenderOptions) -> str:
    lines = []
    listed = []
    for model in report.models:
        path = relative_model_path(model.path)
        if model.status != "ok":
            problem = printable(model.error or "", 2000)
            lines.append(annotation("error", path, "bnlint: unreadable model", problem))
            continue
        shown = shown_findings(model.findings, options.show_known)
        listed += shown
        for group in group_findings(shown):
            title = f"{group.code} {group.first.name}"
            if group.count > 1:
                title += f" ({group.count} layers)"
            level = COMMANDS[group.severity.label]
            lines.append(annotation(level, path, title, _message(group)))
    lines.extend(summary_lines(report, listed))
    return "\n".join(lines) + "\n"
