"""A report carries enough provenance to rerun the same check elsewhere and compare."""

from __future__ import annotations

import html
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bnlint.evidence.reproduce import main, reproduce
from bnlint.toml_writer import toml_text
from tests.report_models import build_models, degenerate_layer

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

CONFIG = """\
select = ["ALL", "BN011"]
ignore = ["BN017"]
target-dtype = "float16"
input-shape = ["x:1x3x8x8"]

[severity]
BN011 = "warning"

[per-model-ignores]
"models/degenerate/*.onnx" = ["foldable-batchnorm"]

[per-node-ignores]
"^mid\\\\." = ["BN006"]

[fold-precision-hazard]
int8-spread = 8.0
"""


@pytest.fixture
def ci_run(run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A "CI job": models and a configuration file in a checkout, a JSON report kept."""
    checkout = tmp_path / "ci" / "checkout"
    build_models(checkout / "models")
    (checkout / "bnlint.toml").write_text(CONFIG)
    monkeypatch.chdir(checkout)
    run_cli(
        ["models", "--phase", "inference", "--verify", "--format", "json", "-o", "report.json"],
        exit_code=2,  # models/corrupt.onnx is unreadable, and recorded as such
    )
    report = json.loads((checkout / "report.json").read_text())
    degenerate = next(m for m in report["models"] if m["path"].endswith("degenerate.onnx"))
    codes = {f["code"] for f in degenerate["findings"]}
    assert "BN006" in codes and "BN011" not in codes, "the per-model ignore applied in CI"
    assert sum(len(m["findings"]) for m in report["models"]) >= 8
    return report


def _elsewhere(report: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Another machine: the same files under another root, no configuration file around."""
    other = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "ci" / "checkout" / "models", other / "models")
    shutil.rmtree(tmp_path / "ci")  # nothing of the original run is left
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return other


def test_rerun_from_the_recorded_provenance_gives_identical_findings(
    ci_run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _elsewhere(ci_run, tmp_path, monkeypatch)
    comparisons = reproduce(ci_run, root=other)
    assert len(comparisons) == len(ci_run["models"]) == 6
    for item in comparisons:
        assert item.same_file and item.differences == [], (item.path, item.differences)
    assert sum(item.findings for item in comparisons) == sum(
        len(m["findings"]) for m in ci_run["models"]
    )
    report = tmp_path / "report.json"
    report.write_text(json.dumps(ci_run))
    assert main([str(report), "--root", str(other)]) == 0


def test_a_changed_setting_or_file_is_reported(
    ci_run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    other = _elsewhere(ci_run, tmp_path, monkeypatch)
    tampered = json.loads(json.dumps(ci_run))
    tampered["provenance"]["configurations"][0]["settings"]["severity"] = {}
    (resnet,) = [item for item in reproduce(tampered, root=other) if "resnet" in item.path]
    assert resnet.same_file and resnet.differences == [
        f"BN011 at {bn}: severity differ" for bn in ("block.bn1", "block.bn2", "stem.bn")
    ]

    (other / "models" / "resnet" / "resnet_opset15.onnx").write_bytes(b"\x08\x07 other bytes")
    report = tmp_path / "report.json"
    report.write_text(json.dumps(ci_run))
    assert main([str(report), "--root", str(other)]) == 1
    output = capsys.readouterr().out
    assert "DIFFERENT: models/resnet/resnet_opset15.onnx: file differs" in output
    assert "same: models/training/opset14_training_mode.onnx: same file" in output


def test_a_report_that_cannot_be_rerun_exits_2(tmp_path: Path, capsys) -> None:
    without = tmp_path / "old.json"
    without.write_text(json.dumps({"schema_version": "1.0", "models": []}))
    assert main([str(without)]) == 2
    assert "has no provenance" in capsys.readouterr().err
    missing = tmp_path / "missing.json"
    missing.write_text(
        json.dumps(
            {
                "models": [{"path": "gone.onnx", "status": "ok", "findings": []}],
                "provenance": {
                    "invocation": {"working_directory": str(tmp_path)},
                    "configurations": [{"settings": {}}],
                    "models": [{"path": "gone.onnx", "sha256": "0" * 64, "configuration": 0}],
                },
            }
        )
    )
    assert main([str(missing)]) == 2
    assert "gone.onnx: model file not found" in capsys.readouterr().err


def test_the_printed_configuration_reruns_through_the_cli(
    run_cli, ci_run: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    report = tmp_path / "ci" / "checkout" / "report.json"
    assert main([str(report), "--print-config"]) == 0
    recorded = tmp_path / "recorded.toml"
    recorded.write_text(capsys.readouterr().out)
    training = next(m for m in ci_run["models"] if m["path"].endswith("training_mode.onnx"))
    model = tmp_path / "ci" / "checkout" / training["path"]
    rerun = run_cli([model, "--config", recorded, "--verify", "--format", "json"], exit_code=1)
    (found,) = rerun.json["models"]
    strip = [{k: v for k, v in f.items() if k != "location"} for f in training["findings"]]
    assert [{k: v for k, v in f.items() if k != "location"} for f in found["findings"]] == strip


def test_toml_writer_round_trips_what_settings_hold() -> None:
    settings = {
        "select": ["ALL"],
        "phase": None,
        "docs-url": "https://example.org/r/",
        "max-nodes": 2_000_000,
        "tolerance": 1e-05,
        "flag": False,
        "severity": {"BN007": "warning"},
        "per-node-ignores": {'^a"b\\.c\u00e9\x7f\n': ["BN001"], "": []},
        "input-shape": {"": [1, 3, 8, 8], "x y": [2]},
        "fold-mismatch": {"tolerance-scale": 2.0, "nested": {"k": [1, 2]}},
    }
    parsed = tomllib.loads(toml_text(settings, "comment"))
    assert parsed == {key: value for key, value in settings.items() if value is not None}


def test_python_m_bnlint_reproduce_is_the_stable_entry_point() -> None:
    """Reports, issues and users' scripts name ``python -m bnlint.reproduce``."""
    done = subprocess.run(
        [sys.executable, "-m", "bnlint.reproduce", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m bnlint.reproduce [-h]")
    assert "--print-config" in done.stdout


def test_the_reproduce_command_a_report_prints_runs(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = degenerate_layer(tmp_path / "models")
    monkeypatch.chdir(tmp_path)
    args = [model.relative_to(tmp_path), "--phase", "inference", "--format", "json"]
    run_cli([*args, "-o", "report.json", "--report-html", "report.html"], exit_code=1)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    (steps,) = re.findall(r'<pre class="mono" id="reproduce">(.*?)</pre>', page, re.S)
    command = html.unescape(steps).splitlines()[-1]
    assert command == "python -m bnlint.reproduce report.json"
    argv = [sys.executable, *shlex.split(command)[1:]]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("same: models/degenerate.onnx: same file")
