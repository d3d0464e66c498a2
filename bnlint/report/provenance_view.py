"""The report's provenance as the HTML and Markdown templates show it.

Every value here is plain text (paths and command lines come from the user, input names
from model files): control and bidirectional characters are shown as escapes
(:func:`bnlint.report.sanitize.printable`) and the templates escape the rest.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from bnlint.findings import Report
from bnlint.report.sanitize import printable

SHOWN_LIBRARIES = ("onnx", "onnxruntime", "torch", "numpy", "protobuf")


def _size(size: int | None) -> str:
    if size is None:
        return "—"
    value, unit = float(size), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{size} B" if unit == "B" else f"{value:.1f} {unit} ({size} B)"


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=True)


def _batch(context: dict[str, Any]) -> str:
    parts = [
        f"{name} = {batch['value']} ({batch['source']})"
        for name, batch in (context.get("batch_sizes") or {}).items()
    ]
    if context.get("train_batch_size") is not None:
        parts.append(f"train batch {context['train_batch_size']} (setting)")
    return "; ".join(parts) or "unknown"


def _inputs(context: dict[str, Any]) -> str:
    items = []
    for item in context.get("inputs") or []:
        shape = "×".join(str(d) for d in item.get("shape") or []) or "?"
        items.append(f"{item.get('name')}: {item.get('dtype') or '?'} [{shape}]")
    return "; ".join(items) or "—"


def _model(entry: dict[str, Any]) -> dict[str, Any]:
    context = entry.get("context") or {}
    rules = entry.get("rules_run")
    return {
        "path": entry.get("path") or "",
        "sha256": entry.get("sha256")
        or ("not hashed: not read" if entry.get("status") == "error" else "not a file"),
        "size": _size(entry.get("size")),
        "status": entry.get("status"),
        "configuration": entry.get("configuration", 0),
        "phase": (
            f"{context['phase'] or 'none (parameter rules only)'} (from {context['phase_origin']})"
            if context
            else "—"
        ),
        "inputs": _inputs(context) if context else "—",
        "batch": _batch(context) if context else "—",
        "target_dtype": context.get("target_dtype") or "not set",
        "rules_run": f"{len(rules)}: {', '.join(rules)}" if rules is not None else "—",
    }


def _configuration(record: dict[str, Any], position: int) -> dict[str, Any]:
    origins = record.get("origins") or {}
    settings = record.get("settings") or {}
    changed = [
        {"key": key, "value": _compact(settings.get(key)), "origin": origin}
        for key, origin in origins.items()
        if origin != "default" and key in settings
    ]
    for key, value in settings.items():  # rule tables (by rule name) have no origin entry
        if key not in origins and isinstance(value, dict):
            changed.append(
                {"key": key, "value": _compact(value), "origin": origins.get("rule-tables", "")}
            )
    flags = record.get("flags") or {}
    changed += [
        {"key": f"--{key}", "value": "on", "origin": origins.get(key, "command line")}
        for key, value in flags.items()
        if value
    ]
    return {
        "index": position,
        "path": record.get("path") or "none: defaults and command line",
        "sha256": record.get("sha256") or "—",
        "changed": changed,
        "rules": [
            {
                "code": rule["code"],
                "name": rule["name"],
                "severity": rule["severity"],
                "options": ", ".join(f"{k} = {_compact(v)}" for k, v in rule["options"].items()),
            }
            for rule in record.get("rules") or []
        ],
        "tolerances": _compact(record["verification_tolerances"])
        if record.get("verification_tolerances")
        else None,
    }


def _verification(data: dict[str, Any]) -> str:
    verification = data.get("verification") or {}
    if not verification.get("requested"):
        return "not requested (no --verify): fold verification (BN012) and BN018 did not run"
    ran = ", ".join(verification.get("rules_run") or []) or "no verification rule applied"
    runtimes = ", ".join(
        f"{name} {version}"
        for name, version in (verification.get("runtimes") or {}).items()
        if version
    )
    text = f"ran: {ran}; runtime: {runtimes or 'none (algebraic level only)'}"
    reduced = verification.get("reduced_level") or []
    if reduced:
        text += f"; reduced to the algebraic level for {len(reduced)} model(s)"
    return text


def _reproduce(data: dict[str, Any], models: list[dict[str, Any]]) -> list[str]:
    invocation = data.get("invocation") or {}
    environment = data.get("environment") or {}
    pins = [f"bnlint=={data.get('bnlint_version')}"]
    for name, package in (environment.get("packages") or {}).items():
        if package.get("imported") and package.get("version"):
            pins.append(f"{name}=={package['version'].split('+')[0]}")
    lines = [f"# Python {environment.get('python')}; the libraries this run used:"]
    lines.append("pip install " + " ".join(shlex.quote(pin) for pin in pins))
    lines.append("# the same inputs (sha256):")
    lines += [f"# {m['sha256']}  {m['path']}" for m in models if len(m["sha256"]) == 64]
    samples = data.get("sample_data") or {}
    if samples.get("sha256"):
        lines.append(f"# {samples['sha256']}  {samples.get('path')}  (--sample-data)")
    if invocation.get("command_line"):
        lines.append(f"cd {shlex.quote(invocation.get('working_directory') or '.')}")
        lines.append(invocation["command_line"])
    else:
        lines.append("# run through the Python API (bnlint.lint) with the settings below")
    lines.append("# or, from a JSON report of this run: rerun with the recorded settings, compare")
    lines.append("python -m bnlint.reproduce report.json")
    return lines


def _samples(data: dict[str, Any]) -> str | None:
    record = data.get("sample_data")
    if not record:
        return None
    if record.get("error"):
        return f"{record.get('path')}: {record['error']}"
    arrays = "; ".join(
        f"{name}: {item.get('dtype')} [{'×'.join(str(d) for d in item.get('shape') or [])}]"
        for name, item in (record.get("arrays") or {}).items()
    )
    return (
        f"{record.get('path')} — {record.get('samples')} samples ({arrays}); "
        f"sha256 {record.get('sha256')}, {_size(record.get('size'))}"
    )


def _inert(value: Any) -> Any:
    """Every string shown, with control and bidi characters as visible escapes."""
    if isinstance(value, str):
        return printable(value, None)
    if isinstance(value, dict):
        return {key: _inert(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_inert(item) for item in value]
    return value


def provenance_view(report: Report) -> dict[str, Any] | None:
    """Template data for the report's provenance, or None when the report has none."""
    data = report.provenance
    if not data:
        return None
    environment = data.get("environment") or {}
    packages = environment.get("packages") or {}
    libraries = []
    for name in SHOWN_LIBRARIES:
        package = packages.get(name) or {}
        version = package.get("version")
        state = "used" if package.get("imported") else "installed, not used"
        libraries.append(
            {"name": name, "text": f"{version} ({state})" if version else "not installed"}
        )
    models = [_model(entry) for entry in data.get("models") or []]
    invocation = data.get("invocation") or {}
    view = {
        "command": invocation.get("command_line") or "bnlint.lint(…) (Python API)",
        "working_directory": invocation.get("working_directory") or "",
        "started": data.get("started"),
        "finished": data.get("finished"),
        "bnlint": data.get("bnlint_version"),
        "python": f"{environment.get('python_implementation', 'Python')} "
        f"{environment.get('python', '?')} on {environment.get('platform', '?')}",
        "libraries": libraries,
        "ci": [f"{key}={value}" for key, value in (environment.get("ci") or {}).items()],
        "models": models,
        "configurations": [
            _configuration(record, position)
            for position, record in enumerate(data.get("configurations") or [])
        ],
        "verification": _verification(data),
        "sample_data": _samples(data),
        "reproduce": _reproduce(data, models),
    }
    # Paths, input names and settings come from users and model files: shown inert. The JSON
    # is ASCII (non-ASCII as \u escapes), so the embedded record parses back unchanged.
    view = _inert(view)
    view["reproduce"] = "\n".join(view["reproduce"])  # one line per step, each inert
    view["json"] = json.dumps(data, indent=2, ensure_ascii=True).replace("\x7f", "\\u007f")
    return view
