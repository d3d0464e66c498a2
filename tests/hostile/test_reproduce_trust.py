"""``python -m bnlint.reproduce`` on a crafted report: a report is data (issue 12, item 1).

The report records a rules folder, an ``arch`` module in the working directory, an
allowed data root of ``/``, a node limit of 10**12 and ``--trust-model-code`` over a pickle
payload, with the right sha256 for every file: rerunning it must import nothing, unpickle
nothing, say which settings it ignored and how to give them on purpose, and never open a
model file outside ``--root`` nor lint one whose sha256 changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.hostile import trust_files
from tests.hostile.runner import REPRODUCE, TORCH_ADDRESS_SPACE, assert_behaved, run_attack
from tests.zoo import onnx_zoo


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _report(work: Path, models: list[Path], settings: dict, flags: dict, shas=None) -> Path:
    shas = shas or [_sha(path) for path in models]
    relative = [str(path.relative_to(work)) for path in models]
    report = {
        "schema_version": "1.1",
        "models": [{"path": p, "status": "ok", "findings": []} for p in relative],
        "provenance": {
            "invocation": {"working_directory": str(work)},
            "configurations": [{"path": None, "settings": settings, "flags": flags}],
            "models": [
                {"path": p, "sha256": sha, "configuration": 0}
                for p, sha in zip(relative, shas, strict=True)
            ],
        },
    }
    (path := work / "report.json").write_text(json.dumps(report))
    return path


@pytest.fixture(scope="module")
def attack(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("reproduce")
    markers = {name: work / f"MARKER_{name}" for name in ("rules", "arch", "pickle")}
    rules = trust_files.rules_dir(work / "evil_rules", markers["rules"])
    arch = trust_files.arch_module(work, markers["arch"])
    onnx_model = onnx_zoo.opset14_training_mode(work / "models")
    state = trust_files.state_dict(work / "models" / "state.pt")
    payload = trust_files.exec_zip(work / "models" / "payload.pt", markers["pickle"])
    changed = onnx_zoo.resnet_opset15(work / "models")
    settings = {
        "rules-dir": [str(rules)],
        "arch": arch,
        "allowed-data-roots": ["/"],
        "max-nodes": 10**12,
    }
    models = [onnx_model, state, payload, changed]
    shas = [_sha(path) for path in models[:3]] + ["0" * 64]  # the last file "changed"
    report = _report(work, models, settings, {"trust-model-code": True}, shas)
    return {"work": work, "report": report, "markers": markers, "rules": rules}


def test_a_report_imports_and_unpickles_nothing(attack: dict) -> None:
    work = attack["work"]
    result = run_attack(
        [attack["report"]],
        work,
        command=REPRODUCE,
        address_space=TORCH_ADDRESS_SPACE,
        expected_seconds=15,
    )
    assert_behaved(result, exit_code=1, markers=list(attack["markers"].values()), stderr_lines=5)
    notes = result.lines
    assert all(
        line.startswith("bnlint: note: configuration 1: ignored the recorded") for line in notes
    )
    for key, option in (
        ("rules-dir", "--rules-dir DIR"),
        ("arch", "--arch MODULE:FACTORY"),
        ("allowed-data-roots", "--allowed-data-root DIR"),
        ("max-nodes", "--max-nodes N"),
        ("--trust-model-code", "--trust-model-code"),
    ):
        assert any(f"recorded {key}" in line and f"pass {option}" in line for line in notes), key
    assert "models/payload.pt: same file" in result.stdout
    assert "not linted: the file differs (pass --run-changed)" in result.stdout


def test_trust_given_on_the_command_line_is_used(attack: dict, tmp_path: Path) -> None:
    """Control: the payloads are live, and the option the note names re-enables them."""
    work = attack["work"]
    model = work / "models" / "opset14_training_mode.onnx"
    report = _report(tmp_path, [], {}, {})
    data = json.loads(report.read_text())
    data["models"] = [{"path": str(model), "status": "ok", "findings": []}]
    data["provenance"]["models"] = [{"path": str(model), "sha256": _sha(model), "configuration": 0}]
    report.write_text(json.dumps(data))
    marker = attack["markers"]["rules"]
    result = run_attack(
        [report, "--root", work, "--rules-dir", attack["rules"]],
        tmp_path,
        command=REPRODUCE,
        watch=[tmp_path],
    )
    assert marker.exists(), result.stderr
    marker.unlink()


def test_model_paths_outside_the_root_are_not_opened(tmp_path: Path) -> None:
    (work := tmp_path / "work").mkdir()
    report = _report(work, [], {}, {})
    data = json.loads(report.read_text())
    data["models"] = [{"path": "/etc/passwd", "status": "ok", "findings": []}]
    data["provenance"]["models"] = [{"path": "/etc/passwd", "sha256": "0" * 64}]
    report.write_text(json.dumps(data))
    result = run_attack([report], work, command=REPRODUCE)
    assert_behaved(result, exit_code=2, error="/etc/passwd: outside --root")


def test_deeply_nested_json_is_one_error_line(tmp_path: Path) -> None:
    (report := tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    result = run_attack([report], tmp_path, command=REPRODUCE)
    assert_behaved(result, exit_code=2, error="nested deeper than 64 levels")


def test_a_report_cannot_name_a_configuration_file(tmp_path: Path) -> None:
    """Before: ``extend`` went into the rerun's ``--config`` file, which trusts what it
    extends, so a planted TOML's ``rules-dir`` was imported (reached via /proc/self/cwd)."""
    marker = tmp_path / "MARKER_extend"
    rules = trust_files.rules_dir(tmp_path / "plug", marker)
    (tmp_path / "evil.toml").write_text(f'rules-dir = ["{rules.name}"]\n')
    model = onnx_zoo.opset14_training_mode(tmp_path / "models")
    report = _report(tmp_path, [model], {"extend": "/proc/self/cwd/evil.toml"}, {})
    result = run_attack([report], tmp_path, command=REPRODUCE, expected_seconds=10)
    assert_behaved(result, exit_code=1, markers=[marker], stderr_lines=1)
    assert "ignored the recorded extend" in result.lines[0]
    assert "BN003 at bn: found now" in result.stdout  # the rerun itself went ahead
