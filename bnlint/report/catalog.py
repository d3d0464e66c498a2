"""What reporters need to know about the rules behind a report's findings."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field

from bnlint.findings import Finding, Report
from bnlint.report import RenderOptions
from bnlint.rule import DEFAULT_DOCS_URL, doc_sections

BUILTIN_CODE = re.compile(r"^BN\d{3}$")  # bnlint's rules and its BN9xx diagnostics


@dataclass(frozen=True)
class RuleDoc:
    """One rule as a report shows it: summary, documentation sections, absolute URL."""

    code: str
    name: str
    severity: str
    summary: str
    url: str | None  # None: a plug-in rule without a documentation page (no link shown)
    sections: dict[str, str] = field(default_factory=dict)
    doc: str = ""


def _known_rules(report: Report, options: RenderOptions):
    if options.rules is not None:
        return options.rules
    if report.rules is not None:  # the run's rules, recorded by the API
        return report.rules
    from bnlint.engine.registry import load_rules

    try:
        return load_rules().rules
    except Exception:  # a broken plug-in must not break rendering; docs then come from findings
        from bnlint.diagnostics import DIAGNOSTICS

        return DIAGNOSTICS


def _url(finding: Finding, options: RenderOptions) -> str | None:
    """The finding's own link; a bnlint code without one (a finding built by hand) gets its
    page under docs-url, any other code none: a plug-in's page is only the one it declares."""
    if finding.url or not BUILTIN_CODE.match(finding.code):
        return finding.url or None
    base = options.docs_url or DEFAULT_DOCS_URL
    return f"{base.rstrip('/')}/{finding.code}/"


def rule_docs(report: Report, options: RenderOptions) -> dict[str, RuleDoc]:
    """Every code in ``report`` (first-appearance order) with its documentation."""
    rules = _known_rules(report, options)
    docs: dict[str, RuleDoc] = {}
    for finding in report.findings:
        if finding.code in docs:
            continue
        rule = rules.get(finding.code)
        if rule is None:
            docs[finding.code] = RuleDoc(
                finding.code, finding.name, finding.severity.label, "", _url(finding, options)
            )
            continue
        text = inspect.cleandoc(rule.doc or "")
        docs[finding.code] = RuleDoc(
            code=rule.code,
            name=rule.name,
            severity=rule.spec.severity.label,
            summary=rule.summary,
            url=_url(finding, options),
            sections=doc_sections(text),
            doc=text,
        )
    return docs
