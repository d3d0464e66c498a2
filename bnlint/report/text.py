"""Terminal output, ruff-like: ``path:node [op] CODE message``.

Findings are grouped as in :mod:`bnlint.report.groups`, and across models too: the same
rule with the same message template in 200 models of a folder is one group whose first
finding is printed in full and whose other places are named on one line (``+N more``),
not 200 repetitions of one problem and one fix; findings whose Python source lines differ
stay apart. ``-q`` keeps one line per finding, and the other formats keep their own.
"""

from __future__ import annotations

from bnlint.findings import Finding, Report, Severity
from bnlint.report import RenderOptions
from bnlint.report.groups import SHOWN_NAMES, group_findings, shown_findings, template
from bnlint.report.sanitize import printable
from bnlint.report.summary import severity_counts, summary_lines

_STYLES = {
    Severity.ERROR: "\x1b[1;31m",
    Severity.WARNING: "\x1b[1;33m",
    Severity.INFO: "\x1b[1;34m",
}
_BOLD, _DIM, _RESET = "\x1b[1m", "\x1b[2m", "\x1b[0m"


def _paint(text: str, style: str, color: bool) -> str:
    return f"{style}{text}{_RESET}" if color else text


def finding_line(path: str, finding: Finding, color: bool = False) -> str:
    where = printable(path, limit=None)
    if finding.node or finding.scope:
        where += ":" + printable(finding.scope or finding.node)
    op = f" [{printable(finding.op, 60)}]" if finding.op else ""
    code = _paint(finding.code, _STYLES[finding.severity], color)
    if finding.baseline_state == "unchanged":  # listed with --show-known
        code += " (known)"
    return f"{_paint(where, _BOLD, color)}{op} {code} {printable(finding.message, 2000)}"


def source_location(finding: Finding) -> str | None:
    """``file:line`` of the Python source behind the node, when the front end knows it."""
    source_file = finding.location.get("source_file")
    if not source_file:
        return None
    line = finding.location.get("source_line")
    return printable(f"{source_file}:{line}" if line else source_file, None)


def render(report: Report, options: RenderOptions) -> str:
    if options.statistics:
        return render_statistics(report, options)
    lines: list[str] = []
    listed: list[Finding] = []
    groups: dict[tuple[str, int, str | None, str, str | None], list[tuple[str, Finding]]] = {}
    for model in report.models:
        shown = shown_findings(model.findings, options.show_known)
        listed += shown
        if options.quiet:  # one line per finding, nothing else: for grep and scripts
            lines.extend(finding_line(model.path, finding, options.color) for finding in shown)
            continue
        for group in group_findings(shown):
            first = group.first
            key = (first.code, int(first.severity), first.baseline_state, template(first))
            key += (source_location(first),)  # another source line is another place to fix
            groups.setdefault(key, []).extend((model.path, finding) for finding in group.findings)
    for members in groups.values():
        lines.extend(_group_lines(members, options))
    for model in report.models if not options.quiet else ():
        if model.verification:
            from bnlint.report.verification import table_lines

            lines.append(
                _paint(f"{printable(model.path, None)}: fold verification", _BOLD, options.color)
            )
            lines.extend(f"  {line}" for line in table_lines(model.verification))
    if not options.quiet:
        lines.extend(summary_lines(report, listed))
        if report.baseline is not None:
            lines.extend(baseline_lines(report))
    return "\n".join(lines) + ("\n" if lines else "")


def _places_text(members: list[tuple[str, Finding]]) -> str:
    """``b1.bn, other.onnx:b0.bn, +397 more``: the members after the first, a path named
    where it is not the first member's."""
    first_path = members[0][0]
    places = []
    for path, finding in members[1:]:
        where = printable(finding.scope or finding.node or "model")
        places.append(where if path == first_path else f"{printable(path, None)}:{where}")
    text = ", ".join(places[:SHOWN_NAMES])
    if len(places) > SHOWN_NAMES:
        text += f", +{len(places) - SHOWN_NAMES} more"
    return text


def _group_lines(members: list[tuple[str, Finding]], options: RenderOptions) -> list[str]:
    """The first finding in full; the other places of its group named on one line."""
    path, finding = members[0]
    lines = [finding_line(path, finding, options.color)]
    if len(members) > 1:
        also = f"  = also at {_places_text(members)} ({len(members)} in all"
        models = len({member_path for member_path, _ in members})
        also += f", {models} models)" if models > 1 else ")"
        lines.append(_paint(also, _DIM, options.color))
    source = source_location(finding)
    if source:
        lines.append(_paint(f"  --> {source}", _DIM, options.color))
    if finding.fix:
        lines.append(_paint(f"  = help: {printable(finding.fix, 2000)}", _DIM, options.color))
    return lines


def baseline_lines(report: Report) -> list[str]:
    """``--baseline``: how many findings are new, and which baseline entries were fixed."""
    baseline = report.baseline or {}
    fixed = baseline.get("fixed", [])
    lines = [
        f"Baseline {printable(baseline.get('path', ''), None)}: {baseline.get('new', 0)} new, "
        f"{baseline.get('unchanged', 0)} unchanged (not failing), {len(fixed)} fixed."
    ]
    for entry in fixed[:20]:
        node = f":{printable(entry['node'])}" if entry.get("node") else ""
        lines.append(f"  fixed: {printable(entry['path'], None)}{node} {printable(entry['code'])}")
    if len(fixed) > 20:
        lines.append(f"  … and {len(fixed) - 20} more fixed")
    return lines


def render_statistics(report: Report, options: RenderOptions) -> str:
    """Counts per rule (ruff's --statistics), with the severities they were reported at."""
    rows: dict[str, list[Finding]] = {}
    for model in report.models:
        for finding in shown_findings(model.findings, options.show_known):
            rows.setdefault(finding.code, []).append(finding)
    ordered = sorted(rows.items(), key=lambda item: (-len(item[1]), item[0]))
    width = max((len(str(len(found))) for _, found in ordered), default=1)
    lines = []
    for code, found in ordered:
        labels = {finding.severity.label for finding in found}
        severity = labels.pop() if len(labels) == 1 else severity_counts(found)
        lines.append(f"{len(found):>{width}}\t{code}\t{found[0].name}\t[{severity}]")
    return "\n".join(lines) + ("\n" if lines else "")
