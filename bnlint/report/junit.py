"""JUnit XML (``--format junit``) for Jenkins and other CI test-report viewers.

One ``testsuite`` per model and one ``testcase`` per finding. A finding at or above
``--fail-on`` is a ``failure``; the others pass with their text in ``system-out``, so the
failure count is the gate. With ``--baseline`` only new findings are test cases
(``--show-known`` adds the accepted ones as passing cases); the suite's ``known``
property counts them. A clean model is one passing test case; an unreadable one is an
``error``. Text keeps its newlines (XML carries them); only characters XML 1.0 cannot
hold and invisible ones are shown as escapes.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

from bnlint.findings import Finding, ModelResult, Report, Severity, json_safe, nonfinite_text
from bnlint.report import RenderOptions
from bnlint.report.groups import shown_findings
from bnlint.report.sanitize import printable

_NEWLINE = re.compile(r"\r\n|\r|\n")
# Characters XML 1.0 cannot carry, even escaped.
_INVALID_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: object, multiline: bool = False) -> str:
    """Model strings as XML text: characters XML forbids and invisible ones escaped. In a
    ``multiline`` text (a failure's body, system-out) line breaks stay line breaks; in a
    one-line value (a test name, an attribute) they are shown as ``\\x0a``."""
    parts = _NEWLINE.split(str(text)) if multiline else [str(text)]
    lines = [printable(line, None) for line in parts]
    return _INVALID_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", "\n".join(lines))


def _fails(finding: Finding, fail_on: str) -> bool:
    if fail_on == "never" or finding.baseline_state == "unchanged":
        return False
    return finding.severity >= Severity.parse(fail_on)


def _details(finding: Finding) -> str:
    lines = [finding.message]
    if finding.fix:
        lines.append(f"Fix: {finding.fix}")
    if finding.evidence:
        lines.append(
            "Evidence: " + json.dumps(json_safe(finding.evidence, nonfinite_text), sort_keys=True)
        )
    if finding.baseline_state:
        lines.append(f"Baseline: {finding.baseline_state}")
    if finding.url:
        lines.append(f"Docs: {finding.url}")
    return "\n".join(lines)


def _suite(model: ModelResult, fail_on: str, show_known: bool) -> ET.Element:
    suite = ET.Element("testsuite", name=xml_text(model.path))
    failures = errors = 0
    shown = shown_findings(model.findings, show_known)
    if len(shown) < len(model.findings):
        properties = ET.SubElement(suite, "properties")
        known = str(len(model.findings) - len(shown))
        ET.SubElement(properties, "property", name="known", value=known)
    if model.status != "ok":
        case = ET.SubElement(suite, "testcase", classname="bnlint", name="read model")
        error = ET.SubElement(case, "error", type="unreadable-model")
        error.set("message", xml_text(model.error or ""))
        errors = 1
    elif not shown:
        name = "no new findings" if model.findings else "no findings"
        ET.SubElement(suite, "testcase", classname="bnlint", name=name)
    for finding in shown:
        where = finding.scope or finding.node or "<model>"
        case = ET.SubElement(
            suite,
            "testcase",
            classname=xml_text(f"bnlint.{finding.code}"),
            name=xml_text(f"{finding.code} {finding.name} at {where}"),
            file=xml_text(model.path),
        )
        details = xml_text(_details(finding), multiline=True)
        if _fails(finding, fail_on):
            failure = ET.SubElement(case, "failure", type=finding.code)
            failure.set("message", xml_text(f"[{finding.severity.label}] {finding.message}"))
            failure.text = details
            failures += 1
        else:
            ET.SubElement(case, "system-out").text = f"[{finding.severity.label}] {details}"
    suite.set("tests", str(len(suite.findall("testcase"))))
    suite.set("failures", str(failures))
    suite.set("errors", str(errors))
    suite.set("skipped", "0")
    return suite


def render(report: Report, options: RenderOptions) -> str:
    root = ET.Element("testsuites", name="bnlint")
    for model in report.models:
        root.append(_suite(model, options.fail_on, options.show_known))
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(suite.get(key, "0")) for suite in root)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
