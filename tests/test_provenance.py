"""Every report records what a reviewer needs to reproduce it (bnlint.evidence.provenance)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

import bnlint
from bnlint._version import __version__
from bnlint.evidence.digests import CHUNK_BYTES, file_digest
from tests.helpers import validate_report
from tests.zoo import onnx_zoo

REPO = Path(__file__).resolve().parents[1]
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Path]:
    """A training-mode model and a clean one under a configuration file with settings."""
    config = tmp_path / "bnlint.toml"
    config.write_text(
        'target-dtype = "float16"\n'
        'ignore = ["BN017"]\n'
        'extend-select = ["BN011"]\n\n'
        '[severity]\nBN011 = "warning"\n\n'
        "[fold-mismatch]\ntolerance-scale = 2.0\n"
    )
    return {
        "config": config,
        "training": onnx_zoo.opset14_training_mode(tmp_path / "models"),
        "resnet": onnx_zoo.resnet_opset15(tmp_path / "models"),
    }


def test_file_digest_streams_in_chunks(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK_BYTES + 12345)
    big = tmp_path / "big.bin"
    big.write_bytes(data)
    tracemalloc.start()
    try:
        digest = file_digest(big)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert peak < 2 * CHUNK_BYTES, f"hashing held {peak} bytes: it must not read the whole file"


def test_file_digest_never_reads_what_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # opening it for reading would block without O_NONBLOCK
    assert file_digest(fifo) is None
    assert file_digest(tmp_path) is None
    assert file_digest(tmp_path / "missing.onnx") is None
    assert file_digest("pkg.models:build") is None


def test_json_report_records_files_settings_context_and_command(
    run_cli, project: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project["config"].parent)
    monkeypatch.delenv("CI", raising=False)  # the suite itself runs with CI=true in CI
    monkeypatch.setenv("GITHUB_SHA", "0123abcd")
    monkeypatch.setenv("GITHUB_TOKEN", "must-never-appear")
    args = ["models", "--phase", "inference", "--format", "json"]
    provenance = run_cli(args, exit_code=1).json["provenance"]

    assert provenance["bnlint_version"] == __version__
    assert TIMESTAMP.match(provenance["started"]) and TIMESTAMP.match(provenance["finished"])
    assert provenance["started"] <= provenance["finished"]
    assert provenance["invocation"] == {
        "kind": "cli",
        "argv": ["bnlint", *args],  # what bnlint was invoked with, not pytest's sys.argv
        "command_line": "bnlint models --phase inference --format json",
        "working_directory": str(project["config"].parent),
    }
    environment = provenance["environment"]
    assert environment["python"] == ".".join(map(str, sys.version_info[:3]))
    assert environment["packages"]["onnx"]["version"] is not None
    assert environment["ci"] == {"GITHUB_SHA": "0123abcd"}
    assert "must-never-appear" not in json.dumps(provenance)

    (configuration,) = provenance["configurations"]
    assert configuration["path"] == str(project["config"])
    assert configuration["sha256"] == _sha256(project["config"])
    settings, origins = configuration["settings"], configuration["origins"]
    assert settings["target-dtype"] == "float16" and settings["phase"] == "inference"
    assert settings["severity"] == {"BN011": "warning"}
    assert settings["fold-mismatch"] == {"tolerance-scale": 2.0}
    assert origins["target-dtype"] == str(project["config"]) and origins["phase"] == "command line"
    assert origins["select"] == "default"
    rules = {rule["code"]: rule for rule in configuration["rules"]}
    assert "BN017" not in rules, "ignored rules are not among the enabled ones"
    assert rules["BN011"]["severity"] == "warning"
    assert rules["BN012"]["options"] == {"tolerance-scale": 2.0}
    assert rules["BN002"]["options"] == {"min-batch-size": 8, "min-values-per-channel": 16}
    assert configuration["flags"] == {"verify": False, "trust-model-code": False}

    by_name = {Path(entry["path"]).name: entry for entry in provenance["models"]}
    for key in ("training", "resnet"):
        entry = by_name[project[key].name]
        assert entry["sha256"] == _sha256(project[key])
        assert entry["size"] == project[key].stat().st_size
        assert entry["configuration"] == 0 and entry["status"] == "ok"
    context = by_name[project["training"].name]["context"]
    assert context["phase"] == "inference" and context["phase_origin"] == "command line"
    assert context["target_dtype"] == "float16"
    assert context["inputs"] == [{"name": "x", "shape": [2, 3, 8, 8], "dtype": "float32"}]
    assert context["batch_sizes"] == {"x": {"value": 2, "source": "input shape of 'x'"}}
    rules_run = by_name[project["training"].name]["rules_run"]
    assert "BN003" in rules_run and "BN002" not in rules_run, "BN002 is a training rule"
    assert "BN012" not in rules_run, "the dynamic rules do nothing without --verify"
    assert provenance["verification"]["requested"] is False


def test_verification_records_rules_runtimes_and_tolerances(
    run_cli, project: dict[str, Path]
) -> None:
    result = run_cli(
        [project["resnet"], "--config", project["config"], "--verify", "--format", "json"],
        exit_code=1,
    )
    provenance = result.json["provenance"]
    verification = provenance["verification"]
    assert verification["requested"] is True
    assert verification["rules_run"] == ["BN012", "BN018"]
    assert verification["runtimes"]["onnxruntime"] is not None
    tolerances = provenance["configurations"][0]["verification_tolerances"]
    assert tolerances["BN012"]["tolerance-scale"] == 2.0
    assert "u |terms|" in tolerances["BN012"]["algebraic"]  # a criterion, not a constant
    assert "max |original - exact|" in tolerances["BN012"]["numeric"]
    assert tolerances["BN018"]["relative"]["float32"] == pytest.approx(1e-4)
    assert provenance["configurations"][0]["flags"]["verify"] is True


def test_refused_inputs_are_recorded_but_not_read_again(run_cli, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 not protobuf")
    sparse = tmp_path / "huge.onnx"  # refused from its size: hashing must not read 2 GiB
    with sparse.open("wb") as handle:
        handle.truncate(2 * 1024**3 + 1)
    result = run_cli([corrupt, sparse, "--format", "json"], exit_code=2)
    entries = result.json["provenance"]["models"]
    assert [(e["status"], e["sha256"], e["size"]) for e in entries] == [
        ("error", None, corrupt.stat().st_size),
        ("error", None, 2 * 1024**3 + 1),
    ]
    assert not any("context" in entry for entry in entries), "the rules saw nothing"


def test_the_python_api_records_its_provenance(project: dict[str, Path]) -> None:
    report = bnlint.lint(str(project["training"]), phase="training")
    provenance = report.provenance
    assert provenance["invocation"]["kind"] == "api"
    assert provenance["invocation"]["argv"] is None
    assert provenance["models"][0]["sha256"] == _sha256(project["training"])
    assert provenance["models"][0]["context"]["phase_origin"] == "command line"
    import onnx

    in_memory = bnlint.lint(onnx.load(str(project["training"])))
    assert in_memory.provenance["models"][0]["sha256"] is None
    assert in_memory.provenance["models"][0]["context"]["inputs"][0]["name"] == "x"


def test_libraries_are_versioned_without_importing_them(tmp_path: Path) -> None:
    """An ONNX lint in a fresh process: torch is installed, reported, and not imported."""
    model = onnx_zoo.resnet_opset15(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "bnlint", str(model), "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    data = json.loads(result.stdout)
    validate_report(data)
    packages = data["provenance"]["environment"]["packages"]
    assert packages["onnx"]["imported"] is True
    assert packages["torch"]["imported"] is False and packages["torch"]["version"] is not None
    assert packages["onnxruntime"]["imported"] is False
    assert "torch" not in data["provenance"]["models"][0]["libraries"]
