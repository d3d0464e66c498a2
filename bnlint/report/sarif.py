"""SARIF 2.1.0 (``--format sarif``): code-scanning tools and IDEs read it.

Written for GitHub code scanning's ingestion rules (docs.github.com, "SARIF support for
code scanning"; the GH rules of microsoft/sarif-sdk's validator): every result has a
physical location with ``region.startLine`` (GitHub places no alert without one): the
Python source line when the finding has one inside the repository (the PyTorch module's
constructor or call), else line 1 of the model file, which is binary; the model file is
then a related location, and so is the ``forward`` call when the source line is the
constructor of the layer (``location.call_line``). Paths are relative to the repository
root (``%SRCROOT%``). The node or module path is a logical location. Each rule has
``shortDescription``, ``fullDescription``, ``help.text`` (plain text) and
``help.markdown`` (its documentation) and an absolute ``helpUri``. With ``--baseline``
every result has a ``baselineState`` and the fixed findings follow as ``absent`` results.

Provenance: each model file is a ``run.artifacts`` entry with its ``sha-256`` hash and
``length`` (results point at it by ``index``); the invocation has the exact command line,
its arguments, the working directory and the UTC start and end; the whole provenance
object (versions, resolved configuration, rules and options, verification) is the run's
``provenance`` property.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePath
from typing import Any
from urllib.parse import quote

from bnlint._version import __version__
from bnlint.findings import Finding, Report, json_safe
from bnlint.report import RenderOptions
from bnlint.report.baseline import model_entries, project_root, relative_model_path
from bnlint.report.catalog import RuleDoc, rule_docs
from bnlint.rule import DEFAULT_DOCS_URL

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
LEVELS = {"error": "error", "warning": "warning", "info": "note"}
ROOT_ID = "SRCROOT"


def _artifact_for(relative: str) -> dict[str, Any]:
    """A repository-relative path under %SRCROOT%; absolute paths as file URIs."""
    if PurePath(relative).is_absolute():
        return {"uri": Path(relative).as_uri()}
    if ":" in relative.split("/")[0]:  # a module:factory entry point, not a file
        return {"uri": quote(relative, safe="")}
    return {"uri": quote(relative), "uriBaseId": ROOT_ID}


def _artifact(path: str) -> dict[str, Any]:
    return _artifact_for(relative_model_path(path))


_MARKDOWN_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.MULTILINE)


def plain_text(markdown: str) -> str:
    """A rule's Markdown documentation as plain text (``help.text``): headings as lines of
    their own, code spans and emphasis unmarked, links as ``text (url)``."""
    text = _HEADING.sub(lambda m: m.group(1).upper(), markdown)
    text = _MARKDOWN_LINK.sub(r"\1 (\2)", text)
    text = re.sub(r"(?<![\w`])(\*\*|__)(.+?)\1", r"\2", text)
    return text.replace("`", "")


def _rule(doc: RuleDoc) -> dict[str, Any]:
    markdown = doc.doc or doc.summary or doc.name
    summary = doc.summary or doc.name
    rule: dict[str, Any] = {
        "id": doc.code,
        "name": doc.name,
        "shortDescription": {"text": summary},
        "fullDescription": {"text": plain_text(doc.sections.get("What it detects") or summary)},
        "helpUri": doc.url,
        "help": {"text": plain_text(markdown), "markdown": markdown},
        "defaultConfiguration": {"level": LEVELS[doc.severity]},
        "properties": {"tags": ["batchnorm"]},
    }
    if doc.url is None:  # a plug-in without a documentation page: no link
        del rule["helpUri"]
    return rule


def _logical(finding: Finding) -> list[dict[str, Any]]:
    if finding.scope:
        return [{"name": finding.scope, "fullyQualifiedName": finding.scope, "kind": "module"}]
    if finding.node:
        return [{"name": finding.node, "fullyQualifiedName": finding.node, "kind": "object"}]
    return []


def _location(
    path: str, finding: Finding | None, artifacts: dict[str, int] | None = None
) -> dict[str, Any]:
    """The model file, line 1 (a binary file has no lines; GitHub needs a region)."""
    artifact = _artifact(path)
    if artifacts is not None and path in artifacts:
        artifact["index"] = artifacts[path]
    physical = {"artifactLocation": artifact, "region": {"startLine": 1}}
    location: dict[str, Any] = {"physicalLocation": physical}
    if finding is not None and _logical(finding):
        location["logicalLocations"] = _logical(finding)
    return location


def _source_location(finding: Finding) -> dict[str, Any] | None:
    """The Python source line behind the finding, when it lies inside the repository
    (a path the exporting machine had elsewhere is no place GitHub can show)."""
    source = finding.location.get("source_file")
    line = finding.location.get("source_line")
    if not source or not isinstance(line, int) or line < 1:
        return None
    relative = str(source).replace("\\", "/")
    if PurePath(relative).is_absolute() or relative.startswith("../") or ":" in relative:
        return None
    location: dict[str, Any] = {
        "physicalLocation": {
            "artifactLocation": {"uri": quote(relative), "uriBaseId": ROOT_ID},
            "region": {"startLine": line},
        }
    }
    if _logical(finding):
        location["logicalLocations"] = _logical(finding)
    return location


def _result(
    path: str,
    finding: Finding,
    entry: dict[str, Any],
    index: dict[str, int],
    artifacts: dict[str, int],
) -> dict[str, Any]:
    text = finding.message
    if finding.fix:
        text += f"\nFix: {finding.fix}"
    model = _location(path, finding, artifacts)
    source = _source_location(finding)
    result: dict[str, Any] = {
        "ruleId": finding.code,
        "ruleIndex": index[finding.code],
        "level": LEVELS[finding.severity.label],
        "message": {"text": text},
        "locations": [source or model],
        "partialFingerprints": {"bnlint/v1": entry["fingerprint"]},
        "properties": {
            "severity": finding.severity.label,
            "evidence": json_safe(finding.evidence),
            "fix": finding.fix,
            **({"url": finding.url} if finding.url else {}),
        },
    }
    if source is not None:
        model.pop("logicalLocations", None)
        result["relatedLocations"] = [
            {"id": 1, "message": {"text": "the model file"}, **model},
        ]
        call = finding.location.get("call_line")
        if isinstance(call, int) and call >= 1:  # the finding points at the constructor
            artifact = source["physicalLocation"]["artifactLocation"]
            physical = {"artifactLocation": artifact, "region": {"startLine": call}}
            result["relatedLocations"].append(
                {"id": 2, "message": {"text": "the forward call"}, "physicalLocation": physical}
            )
    if finding.baseline_state is not None:
        result["baselineState"] = finding.baseline_state
    return result


def _fixed_result(entry: dict[str, Any], index: dict[str, int]) -> dict[str, Any]:
    location: dict[str, Any] = {
        "physicalLocation": {
            "artifactLocation": _artifact_for(entry["path"]),
            "region": {"startLine": 1},
        }
    }
    if entry["node"]:
        location["logicalLocations"] = [
            {"name": entry["node"], "fullyQualifiedName": entry["node"]}
        ]
    result: dict[str, Any] = {
        "ruleId": entry["code"],
        "message": {"text": f"fixed: {entry.get('message') or entry['code']}"},
        "locations": [location],
        "partialFingerprints": {"bnlint/v1": entry["fingerprint"]},
        "baselineState": "absent",
        "level": "none",
        "kind": "pass",
    }
    if entry["code"] in index:
        result["ruleIndex"] = index[entry["code"]]
    return result


def _artifacts(report: Report) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One artifact per model file with its hash and length (from the provenance)."""
    entries = (report.provenance or {}).get("models") or []
    artifacts: list[dict[str, Any]] = []
    positions: dict[str, int] = {}
    for entry in entries:
        path = entry.get("path")
        if not path or path in positions or not entry.get("sha256"):
            continue
        positions[path] = len(artifacts)
        artifacts.append(
            {
                "location": _artifact(path),
                "length": entry["size"],
                "hashes": {"sha-256": entry["sha256"]},
                "roles": ["analysisTarget"],
            }
        )
    return artifacts, positions


def _invocation(report: Report, options: RenderOptions) -> dict[str, Any]:
    notifications = [
        {
            "level": "error",
            "message": {"text": f"cannot read model: {model.error}"},
            "locations": [_location(model.path, None)],
            "descriptor": {"id": "unreadable-model"},
        }
        for model in report.unreadable
    ]
    invocation: dict[str, Any] = {"executionSuccessful": not report.unreadable}
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    provenance = report.provenance or {}
    called = provenance.get("invocation") or {}
    if called.get("argv"):
        invocation["commandLine"] = called["command_line"]
        invocation["arguments"] = list(called["argv"][1:])
    elif options.command:
        invocation["commandLine"] = " ".join(options.command)
    if provenance:
        invocation["startTimeUtc"] = provenance["started"]
        invocation["endTimeUtc"] = provenance["finished"]
        directory = Path(called.get("working_directory") or Path.cwd())
        invocation["workingDirectory"] = {"uri": directory.as_uri().rstrip("/") + "/"}
    return invocation


def sarif_dict(report: Report, options: RenderOptions) -> dict[str, Any]:
    docs = rule_docs(report, options)
    index = {code: position for position, code in enumerate(docs)}
    artifacts, positions = _artifacts(report)
    results = [
        _result(model.path, finding, entry, index, positions)
        for model in report.models
        for finding, entry in model_entries(model)
    ]
    if report.baseline is not None:
        results += [_fixed_result(entry, index) for entry in report.baseline["fixed"]]
    root = project_root(Path.cwd())
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "bnlint",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": options.docs_url or DEFAULT_DOCS_URL,
                "rules": [_rule(doc) for doc in docs.values()],
            }
        },
        "originalUriBaseIds": {ROOT_ID: {"uri": root.as_uri().rstrip("/") + "/"}},
        "invocations": [_invocation(report, options)],
        "results": results,
    }
    if artifacts:
        run["artifacts"] = artifacts
    if report.provenance is not None:
        run["properties"] = {"provenance": report.provenance}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def render(report: Report, options: RenderOptions) -> str:
    return json.dumps(sarif_dict(report, options), indent=2, allow_nan=False) + "\n"
