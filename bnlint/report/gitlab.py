"""GitLab Code Quality JSON (``--format gitlab``): findings in the merge-request widget.

An array of issues (``description``, ``check_name``, ``fingerprint``, ``severity``,
``location.path`` relative to the repository, ``location.lines.begin``). A model file has
no lines, so ``begin`` is 1. An unreadable model becomes a ``blocker`` issue named
``unreadable-model`` so the widget shows why the job failed. With ``--baseline`` only new
findings are issues (``--show-known`` adds the accepted ones): one issue per layer, since
the widget compares fingerprints between pipelines.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bnlint.findings import Report
from bnlint.report import RenderOptions
from bnlint.report.baseline import model_entries, relative_model_path

SEVERITIES = {"error": "critical", "warning": "major", "info": "info"}
UNREADABLE = "unreadable-model"


def _issue(
    check: str, description: str, fingerprint: str, severity: str, path: str
) -> dict[str, Any]:
    return {
        "type": "issue",
        "check_name": check,
        "description": description,
        "categories": ["Bug Risk"],
        "fingerprint": fingerprint,
        "severity": severity,
        "location": {"path": path, "lines": {"begin": 1}},
    }


def gitlab_issues(report: Report, show_known: bool = True) -> list[dict[str, Any]]:
    issues = []
    for model in report.models:
        path = relative_model_path(model.path)
        if model.status != "ok":
            digest = hashlib.sha256(f"{UNREADABLE}\0{path}".encode()).hexdigest()[:32]
            issues.append(
                _issue(UNREADABLE, f"cannot read model: {model.error}", digest, "blocker", path)
            )
            continue
        for finding, entry in model_entries(model):
            if finding.baseline_state == "unchanged" and not show_known:
                continue
            where = finding.scope or finding.node
            description = f"{finding.code} {finding.name}: "
            description += f"{where}: {finding.message}" if where else finding.message
            if finding.fix:
                description += f" Fix: {finding.fix}"
            issue = _issue(
                finding.code,
                description,
                entry["fingerprint"],
                SEVERITIES[finding.severity.label],
                path,
            )
            docs = f"\n\nDocs: {finding.url}" if finding.url else ""
            issue["content"] = {"body": f"{finding.message}{docs}"}
            issues.append(issue)
    return issues


def render(report: Report, options: RenderOptions) -> str:
    issues = gitlab_issues(report, options.show_known)
    return json.dumps(issues, indent=2, allow_nan=False) + "\n"
