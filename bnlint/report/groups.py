"""Group what is the same: one rule, one message template, many layers of one model.

Fifty BatchNorms exported in training mode are one problem with one fix, so the formats
people read (text, HTML, Markdown, GitHub annotations) show them as one group naming the
first few layers, while the formats machines read (JSON, SARIF, JUnit, GitLab) keep one
result per layer. Two findings share a template when their messages are equal once the
finding's own node name, quoted names, bracketed lists and numbers are masked: "running
mean is 0 … in all 16 channels" and "… in all 32 channels" are the same finding.
A group takes the place of its first member, so the order of every format is kept.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bnlint.findings import Finding, Severity

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_BRACKETED = re.compile(r"\[[^\[\]]*\]|\([^()]*\d[^()]*\)")
_NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+(?:\.\d+)?|\.\d+)(?:[eE][-+]?\d+)?(?!\w)")
SHOWN_NAMES = 3  # layers named in a group's one-line form before "+N more"


def template(finding: Finding) -> str:
    """The finding's message with everything that varies from layer to layer masked."""
    text = finding.message
    for name in sorted({finding.scope, finding.node} - {None, ""}, key=len, reverse=True):
        text = text.replace(str(name), "\0")
    text = _QUOTED.sub("'…'", text)
    text = _BRACKETED.sub("[…]", text)
    return _NUMBER.sub("#", text)


@dataclass(frozen=True)
class FindingGroup:
    """Findings of one rule with one message template in one model, in report order."""

    findings: tuple[Finding, ...]

    @property
    def first(self) -> Finding:
        return self.findings[0]

    @property
    def code(self) -> str:
        return self.first.code

    @property
    def severity(self) -> Severity:
        return self.first.severity

    @property
    def count(self) -> int:
        return len(self.findings)

    @property
    def places(self) -> list[str]:
        """Where each member is: module path, else node name, else "model"."""
        return [finding.scope or finding.node or "model" for finding in self.findings]

    @property
    def others(self) -> list[str]:
        return self.places[1:]

    def places_text(
        self, shown: int = SHOWN_NAMES, start: int = 1, show: Callable[[str], str] = str
    ) -> str:
        """``a, b, c, +47 more`` for the members from ``start`` on; ``show`` escapes a name."""
        places = self.places[start:]
        text = ", ".join(show(place) for place in places[:shown])
        if len(places) > shown:
            text += f", +{len(places) - shown} more"
        return text

    @property
    def known(self) -> bool:
        """Every member is in the baseline."""
        return all(finding.baseline_state == "unchanged" for finding in self.findings)

    @property
    def new_count(self) -> int:
        return sum(finding.baseline_state == "new" for finding in self.findings)


def group_findings(findings: Iterable[Finding]) -> list[FindingGroup]:
    """Group ``findings`` (one model's, in report order); a group sits at its first member."""
    members: dict[tuple[str, int, str | None, str], list[Finding]] = {}
    for finding in findings:
        key = (finding.code, int(finding.severity), finding.baseline_state, template(finding))
        members.setdefault(key, []).append(finding)
    return [FindingGroup(tuple(group)) for group in members.values()]


def shown_findings(findings: Sequence[Finding], show_known: bool) -> list[Finding]:
    """The findings a reader is shown: with a baseline, only new ones unless ``show_known``."""
    if show_known:
        return list(findings)
    return [finding for finding in findings if finding.baseline_state != "unchanged"]
