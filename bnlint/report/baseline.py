"""Baselines: accept today's findings so a CI gate fails only on new ones.

A finding's fingerprint is its code, the model path relative to the repository (the git
root above the model, else the working directory), its node (module path, else node name)
and an occurrence index among the findings with the same code and node. Messages and
evidence are left out on purpose: they hold numbers that move between exporter versions.

``--write-baseline FILE`` stores the fingerprints of the current findings.
``--baseline FILE`` marks each current finding ``new`` or ``unchanged`` and lists the
baseline entries no longer found as ``fixed`` (only for models linted in this run, or
whose file is gone: a model left out of the run is not "fixed").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import Any

from bnlint._version import __version__
from bnlint.findings import Finding, ModelResult, Report

BASELINE_VERSION = 1


class BaselineError(Exception):
    """The baseline file is missing, unreadable or not a bnlint baseline."""


def project_root(start: Path) -> Path:
    """The git work tree holding ``start`` (a ``.git`` folder or file), else the cwd."""
    folder = start.resolve()
    for candidate in (folder, *folder.parents):
        if (candidate / ".git").exists():
            return candidate
    return Path.cwd().resolve()


def relative_model_path(path: str) -> str:
    """``path`` relative to its repository (POSIX separators), absolute when outside it."""
    model = Path(path)
    if not model.is_absolute() and not model.exists() and ":" in path:
        return path  # a module:factory entry point or an in-memory model, kept verbatim
    resolved = model.resolve()
    root = project_root(resolved.parent)
    try:
        return PurePosixPath(resolved.relative_to(root)).as_posix()
    except ValueError:
        return resolved.as_posix()


def fingerprint(code: str, model_path: str, node: str, occurrence: int) -> str:
    text = "\0".join((code, model_path, node, str(occurrence)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def model_entries(model: ModelResult) -> Iterator[tuple[Finding, dict[str, Any]]]:
    """Each finding of ``model`` with its baseline entry, in report order."""
    path = relative_model_path(model.path)
    seen: dict[tuple[str, str], int] = {}
    for finding in model.findings:
        key = (finding.code, finding.node_key)
        occurrence = seen.get(key, 0)
        seen[key] = occurrence + 1
        yield (
            finding,
            {
                "fingerprint": fingerprint(finding.code, path, finding.node_key, occurrence),
                "code": finding.code,
                "path": path,
                "node": finding.node_key,
                "occurrence": occurrence,
                "severity": finding.severity.label,
                "message": finding.message,
            },
        )


def fingerprints(report: Report) -> list[str]:
    """The fingerprint of every finding, in report order (used by SARIF and GitLab)."""
    return [entry["fingerprint"] for model in report.models for _, entry in model_entries(model)]


def baseline_dict(report: Report) -> dict[str, Any]:
    entries = [entry for model in report.models for _, entry in model_entries(model)]
    return {
        "bnlint_baseline": BASELINE_VERSION,
        "tool": {"name": "bnlint", "version": __version__},
        "findings": entries,
    }


def render_baseline(report: Report) -> str:
    return json.dumps(baseline_dict(report), indent=2, ensure_ascii=False) + "\n"


def load_baseline(path: str | Path) -> list[dict[str, Any]]:
    """The entries of a baseline file; :class:`BaselineError` says what is wrong."""
    from bnlint.json_data import JsonDataError, load_json

    try:
        data = load_json(Path(path).read_bytes())
    except OSError as error:
        raise BaselineError(f"{path}: cannot read baseline: {error.strerror}") from None
    except JsonDataError as error:
        raise BaselineError(f"{path}: not a bnlint baseline ({error})") from None
    if not isinstance(data, dict) or data.get("bnlint_baseline") != BASELINE_VERSION:
        raise BaselineError(
            f"{path}: not a bnlint baseline (expected bnlint_baseline = {BASELINE_VERSION})"
        )
    entries = data.get("findings")
    required = ("fingerprint", "code", "path", "node")
    if not isinstance(entries, list) or not all(
        isinstance(entry, dict) and all(isinstance(entry.get(key), str) for key in required)
        for entry in entries
    ):
        raise BaselineError(f"{path}: malformed baseline: findings must be a list of entries")
    return entries


def apply_baseline(report: Report, entries: list[dict[str, Any]], source: str) -> Report:
    """Mark findings new/unchanged in place and record the fixed ones on ``report``."""
    known = {entry["fingerprint"] for entry in entries}
    found: set[str] = set()
    linted: set[str] = set()
    new = unchanged = 0
    for model in report.models:
        if model.status != "ok":
            continue
        marked = []
        for finding, entry in model_entries(model):
            linted.add(entry["path"])
            state = "unchanged" if entry["fingerprint"] in known else "new"
            found.add(entry["fingerprint"])
            new += state == "new"
            unchanged += state == "unchanged"
            marked.append(replace(finding, baseline_state=state))
        linted.add(relative_model_path(model.path))
        model.findings = marked
    fixed = [
        entry
        for entry in entries
        if entry["fingerprint"] not in found
        and (entry["path"] in linted or _model_gone(entry["path"]))
    ]
    report.baseline = {"path": source, "new": new, "unchanged": unchanged, "fixed": fixed}
    return report


def _model_gone(model_path: str) -> bool:
    path = Path(model_path)
    if not path.is_absolute():
        path = project_root(Path.cwd()) / path
    return not path.exists()
