"""The verification section of a model (one verdict per BN) as terminal text.

The data comes from ``ModelResult.verification`` (see ``bnlint.fold.report``); every
name in it comes from the model and is sanitized before it reaches a terminal.
"""

from __future__ import annotations

from typing import Any

from bnlint.findings import NONFINITE_KEY
from bnlint.report.sanitize import printable


def _number(value: Any) -> str:
    if isinstance(value, dict) and NONFINITE_KEY in value:  # JSON's stand-in for NaN / inf
        return printable(str(value[NONFINITE_KEY]), 20)
    return f"{value:.1e}" if isinstance(value, (int, float)) else printable(str(value), 20)


def table_lines(section: dict[str, Any]) -> list[str]:
    """One line per BN (verdict, target or reason, error / bound per level), ``!`` lines
    for problems, then the model outputs and what could not run."""
    rows = section.get("bns") or []
    if not rows:
        return ["no BatchNormalization in the model"]
    names = [printable(str(row.get("bn")), 80) for row in rows]
    width = max(len(name) for name in names)
    lines = [f"{'BN':<{width}}  {'verdict':<16}  into / why not  [level error / bound]"]
    for name, row in zip(names, rows, strict=True):
        into = row.get("into") or f"({row.get('reason_code')}) {row.get('reason')}"
        if row.get("verdict") == "unmatched" and row.get("reason"):
            into = row["reason"]
        margins = ""
        for level in ("algebraic", "numeric"):
            check = row.get(level)
            if check:
                margins += f"  [{level[:3]} {_number(check['error'])} / {_number(check['bound'])}]"
        lines.append(
            f"{name:<{width}}  {row.get('verdict', ''):<16}  {printable(into, 300)}{margins}"
        )
        if row.get("problem"):
            lines.append(f"{'':<{width}}  {'':<16}  ! {printable(row['problem'], 600)}")
    for output in section.get("outputs") or []:
        state = "ok" if output.get("ok") else "DIFFERS"
        lines.append(
            f"output {printable(str(output.get('tensor')), 80)}: {state}, changed by "
            f"{_number(output.get('error'))} (bound {_number(output.get('bound'))}, "
            f"null fold {_number(output.get('original_error'))})"
        )
    levels = section.get("levels") or {}
    for key, label in (("numeric_skipped", "numeric level"), ("outputs_skipped", "model outputs")):
        if levels.get(key):
            lines.append(f"{label} not run: {printable(str(levels[key]), 300)}")
    return lines
