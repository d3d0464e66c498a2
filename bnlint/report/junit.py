"""JUnit XML (``--format junit``) for Jenkins and other CI test-report viewers.

One ``testsuite`` per model and one ``testcase`` per finding. A finding at or above
``--fail-on`` (and not already in the baseline) is a ``failure``; the others pass with
their text in ``system-out``, so the XML carries every finding while its failure count is
the gate. A clean model is one passing test case; an unreadable one is an ``error``.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from bnlint.findings import Finding, ModelResult, Report, Severity, json_safe
from bnlint.report import RenderOptions
from bnlint.report.sanitize import printable

# Characters XML 1.0 cannot carry, even escaped.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: object) -> str:
    """Model strings as XML text: characters XML forbids and invisible ones escaped."""
    return _INVALID_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", printable(text, None))


def _fails(finding: Finding, fail_on: str) -> bool:
    if fail_on == "never" or finding.baseline_state == "unchanged":
        return False
    return finding.severity >= Severity.parse(fail_on)


def _details(finding: Finding) -> str:
    lines = [finding.message]
    if finding.fix:
        lines.append(f"Fix: {finding.fix}")
    if finding.evidence:
        lines.append("Evidence: " + json.dumps(json_safe(finding.evidence), sort_keys=True))
    if finding.baseline_state:
        lines.append(f"Baseline: {finding.baseline_state}")
    lines.append(f"Docs: {finding.url}")
    return "\n".join(lines)


def _suite(model: ModelResult, fail_on: str) -> ET.Element:
    suite = ET.Element("testsuite", name=xml_text(model.path))
    failures = errors = 0
    if model.status != "ok":
        case = ET.SubElement(suite, "testcase", classname="bnlint", name="read model")
        error = ET.SubElement(case, "error", type="unreadable-model")
        error.set("message", xml_text(model.error or ""))
        errors = 1
    elif not model.findings:
        ET.SubElement(suite, "testcase", classname="bnlint", name="no findings")
    for finding in model.findings:
        where = finding.scope or finding.node or "<model>"
        case = ET.SubElement(
            suite,
            "testcase",
            classname=xml_text(f"bnlint.{finding.code}"),
            name=xml_text(f"{finding.code} {finding.name} at {where}"),
            file=xml_text(model.path),
        )
        details = xml_text(_details(finding))
        if _fails(finding, fail_on):
            failure = ET.SubElement(case, "failure", type=finding.code)
            failure.set("message", xml_text(f"[{finding.severity.label}] {finding.message}"))
            failure.text = details
            failures += 1
        else:
            ET.SubElement(case, "system-out").text = f"[{finding.severity.label}] {details}"
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    return suite


def render(report: Report, options: RenderOptions) -> str:
    root = ET.Element("testsuites", name="bnlint")
    for model in report.models:
        root.append(_suite(model, options.fail_on))
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in root)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
