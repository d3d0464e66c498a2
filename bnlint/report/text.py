"""Terminal output, ruff-like: ``path:node [op] CODE message``."""

from __future__ import annotations

from bnlint.findings import Finding, Report, Severity
from bnlint.report import RenderOptions
from bnlint.report.sanitize import printable

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
    for model in report.models:
        for finding in model.findings:
            lines.append(finding_line(model.path, finding, options.color))
            source = source_location(finding)
            if source and not options.quiet:
                lines.append(_paint(f"  --> {source}", _DIM, options.color))
            if finding.fix and not options.quiet:
                lines.append(
                    _paint(f"  = help: {printable(finding.fix, 2000)}", _DIM, options.color)
                )
        if model.verification and not options.quiet:
            from bnlint.report.verification import table_lines

            lines.append(
                _paint(f"{printable(model.path, None)}: fold verification", _BOLD, options.color)
            )
            lines.extend(f"  {line}" for line in table_lines(model.verification))
    if not options.quiet:
        lines.append(summary_line(report))
        if report.baseline is not None:
            lines.extend(baseline_lines(report))
    return "\n".join(lines) + ("\n" if lines else "")


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


def summary_line(report: Report) -> str:
    counts = report.counts_by_severity()
    total = sum(counts.values())
    models = len(report.models)
    noun = "model" if models == 1 else "models"
    if total == 0:
        text = f"No findings in {models} {noun}."
    else:
        parts = ", ".join(
            f"{n} {label}{'s' if n != 1 and label != 'info' else ''}"
            for label, n in counts.items()
            if n
        )
        text = f"Found {total} finding{'s' if total != 1 else ''} ({parts}) in {models} {noun}."
    unreadable = len(report.unreadable)
    if unreadable:
        text += f" {unreadable} could not be read."
    return text


def render_statistics(report: Report, options: RenderOptions) -> str:
    rows: dict[str, tuple[int, str, str]] = {}
    for finding in report.findings:
        count, _, _ = rows.get(finding.code, (0, "", ""))
        rows[finding.code] = (count + 1, finding.name, finding.severity.label)
    ordered = sorted(rows.items(), key=lambda item: (-item[1][0], item[0]))
    width = max((len(str(count)) for _, (count, _, _) in ordered), default=1)
    lines = [
        f"{count:>{width}}\t{code}\t{name}\t[{severity}]"
        for code, (count, name, severity) in ordered
    ]
    return "\n".join(lines) + ("\n" if lines else "")
