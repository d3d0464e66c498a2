"""Test helpers: rule cases (positive/negative), JSON schema validation, model writing."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from bnlint.findings import Finding

SCHEMA = Path(__file__).resolve().parents[1] / "bnlint" / "schemas" / "report.schema.json"


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def validate_report(data: dict[str, Any]) -> None:
    """Fail with every schema violation listed."""
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    json: dict[str, Any] | None = None


@dataclass
class Case:
    """One model and what a rule must report on it.

    ``build`` returns an ``onnx.ModelProto``, a path to a model file, or an ``nn.Module``
    (then ``settings`` carries ``example_inputs``). ``expect`` lists the nodes (module path
    if the finding has one, else node name) the rule must report; empty for a near-miss.
    """

    id: str
    build: Callable[[], Any]
    expect: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    severity: str | None = None
    message: str | None = None
    evidence: dict[str, Any] | None = None


def rule_findings(code: str, case: Case) -> list[Finding]:
    """Run only ``code`` on the case's model and return its findings."""
    from bnlint.api import lint

    report = lint(case.build(), select=[code], **case.settings)
    for model in report.models:
        assert model.status == "ok", f"{case.id}: model unreadable: {model.error}"
    return [finding for finding in report.findings if finding.code == code]


def check_case(code: str, case: Case) -> list[Finding]:
    """Assert that ``code`` reports exactly ``case.expect`` (and severity/message/evidence)."""
    findings = rule_findings(code, case)
    got = sorted(finding.scope or finding.node or "<model>" for finding in findings)
    assert got == sorted(case.expect), (
        f"{case.id}: {code} reported {got}, expected {sorted(case.expect)}\n"
        + "\n".join(f"  {f.node}: {f.message}" for f in findings)
    )
    for finding in findings:
        if case.severity is not None:
            assert finding.severity.label == case.severity, f"{case.id}: {finding.severity.label}"
        if case.message is not None:
            assert case.message in finding.message, f"{case.id}: {finding.message!r}"
        for key, value in (case.evidence or {}).items():
            assert finding.evidence.get(key) == value, (
                f"{case.id}: evidence[{key!r}] = {finding.evidence.get(key)!r}, expected {value!r}"
            )
    return findings


def save(model: Any, folder: Path, name: str, **kwargs: Any) -> Path:
    """Write an ONNX ModelProto into ``folder`` and return its path."""
    import onnx

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save_model(model, str(path), **kwargs)
    return path


def lend_test_dependencies(python: Path) -> Path:
    """Make the test environment's packages importable in the virtual environment of
    ``python`` (onnx, click, numpy … without downloading them); returns its site-packages."""
    import subprocess
    import sysconfig

    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return site
