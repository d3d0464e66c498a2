"""Baselines: stable fingerprints, a gate that fails only on new findings, fixed ones listed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bnlint.findings import Finding, ModelResult, Report, Severity
from bnlint.report.baseline import baseline_dict, fingerprints, relative_model_path
from tests.zoo import onnx_zoo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository (a .git folder is what marks its root) with two models."""
    root = tmp_path / "machine-a" / "repo"
    (root / ".git").mkdir(parents=True)
    onnx_zoo.opset14_training_mode(root / "models")  # BN003 error + BN011 info
    onnx_zoo.untrained_stats(root / "models")
    return root


def _json(run_cli, args: list, exit_code: int) -> dict:
    return run_cli([*args, "--format", "json"], exit_code=exit_code).json


def test_baseline_survives_another_machine_and_working_directory(
    run_cli, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    run_cli(["models", "--write-baseline", "bnlint-baseline.json", "-q"], exit_code=0)
    entries = json.loads((repo / "bnlint-baseline.json").read_text())["findings"]
    assert entries and {entry["path"] for entry in entries} == {
        "models/opset14_training_mode.onnx",
        "models/untrained_stats.onnx",
    }
    assert {"code", "node", "occurrence", "fingerprint"} <= set(entries[0])

    other = tmp_path / "machine-b" / "checkout"
    shutil.copytree(repo, other)
    monkeypatch.chdir(other / "models")  # another machine, another working directory
    data = _json(run_cli, [".", "--baseline", other / "bnlint-baseline.json"], exit_code=0)
    states = [f["baseline_state"] for model in data["models"] for f in model["findings"]]
    assert states and set(states) == {"unchanged"}
    assert data["baseline"]["new"] == 0 and data["baseline"]["fixed"] == []


def test_the_gate_fails_only_on_new_findings(
    run_cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    run_cli(["models", "--write-baseline", "baseline.json", "-q"], exit_code=0)
    run_cli(["models"], exit_code=1)  # without the baseline the old errors still fail
    run_cli(["models", "--baseline", "baseline.json"], exit_code=0)

    onnx_zoo.opset9_training(repo / "models")  # a new model with a new error
    data = _json(run_cli, ["models", "--baseline", "baseline.json"], exit_code=1)
    new = [
        (Path(model["path"]).name, f["code"])
        for model in data["models"]
        for f in model["findings"]
        if f["baseline_state"] == "new"
    ]
    assert new and {name for name, _ in new} == {"opset9_training.onnx"}
    text = run_cli(["models", "--baseline", "baseline.json"], exit_code=1).stdout
    assert f"Baseline baseline.json: {len(new)} new," in text


def test_findings_that_disappeared_are_reported_fixed(
    run_cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    run_cli(["models", "--write-baseline", "baseline.json", "-q"], exit_code=0)
    (repo / "models" / "untrained_stats.onnx").unlink()  # deleted: all its findings fixed
    fixed_model = repo / "models" / "opset14_training_mode.onnx"
    onnx_zoo.resnet_opset15(repo / "tmp").replace(fixed_model)  # fixed: eval-mode export
    data = _json(run_cli, ["models", "--baseline", "baseline.json"], exit_code=0)
    fixed = {(entry["path"], entry["code"]) for entry in data["baseline"]["fixed"]}
    assert ("models/opset14_training_mode.onnx", "BN003") in fixed
    assert any(path == "models/untrained_stats.onnx" for path, _ in fixed)
    markdown = run_cli(
        ["models", "--baseline", "baseline.json", "--format", "markdown"], exit_code=0
    )
    assert "### Fixed since the baseline" in markdown.stdout


def test_a_model_left_out_of_the_run_is_not_fixed(
    run_cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    run_cli(["models", "--write-baseline", "baseline.json", "-q"], exit_code=0)
    data = _json(
        run_cli,
        ["models/opset14_training_mode.onnx", "--baseline", "baseline.json"],
        exit_code=0,
    )
    assert data["baseline"]["fixed"] == []


def _finding(message: str, node: str = "layer1.bn") -> Finding:
    return Finding("BN006", "degenerate-running-variance", Severity.ERROR, message, scope=node)


def test_fingerprints_ignore_messages_and_count_occurrences(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    first = Report([ModelResult(str(model), findings=[_finding("min -0.5"), _finding("nan")])])
    again = Report([ModelResult(str(model), findings=[_finding("min -0.7"), _finding("inf")])])
    assert fingerprints(first) == fingerprints(again)
    assert len(set(fingerprints(first))) == 2
    assert [e["occurrence"] for e in baseline_dict(first)["findings"]] == [0, 1]
    moved = Report([ModelResult(str(model), findings=[_finding("min -0.5", node="layer2.bn")])])
    assert fingerprints(moved)[0] not in fingerprints(first)


def test_paths_outside_any_repository_are_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "work"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "m.onnx").write_bytes(b"")
    monkeypatch.chdir(folder)
    assert relative_model_path("sub/m.onnx") == "sub/m.onnx"
    assert relative_model_path(str(folder / "sub" / "m.onnx")) == "sub/m.onnx"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{not json", "not a bnlint baseline (invalid JSON"),
        ('{"findings": []}', "not a bnlint baseline (expected bnlint_baseline = 1)"),
        ('{"bnlint_baseline": 1, "findings": [{"code": 3}]}', "malformed baseline"),
    ],
)
def test_a_bad_baseline_is_one_line_and_exit_2(
    run_cli, repo: Path, tmp_path: Path, content: str, problem: str
) -> None:
    baseline = tmp_path / "baseline.json"
    baseline.write_text(content)
    result = run_cli([repo / "models", "--baseline", baseline], exit_code=2)
    assert result.stderr.startswith(f"bnlint: error: {baseline}: {problem}")
    assert result.stderr.count("\n") == 1


def test_a_missing_baseline_is_exit_2(run_cli, repo: Path, tmp_path: Path) -> None:
    result = run_cli([repo / "models", "--baseline", tmp_path / "nope.json"], exit_code=2)
    assert "cannot read baseline" in result.stderr and result.stderr.count("\n") == 1


def test_the_api_applies_a_baseline_as_the_cli_does(
    run_cli, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bnlint
    from bnlint.report.baseline import BaselineError

    monkeypatch.chdir(repo)
    run_cli(["models", "--write-baseline", "baseline.json", "-q"], exit_code=0)
    onnx_zoo.opset9_training(repo / "models")  # a new model with a new error
    cli = _json(run_cli, ["models", "--baseline", "baseline.json"], exit_code=1)

    without = bnlint.lint("models")
    assert without.baseline is None and {f.baseline_state for f in without.findings} == {None}
    report = bnlint.lint("models", baseline="baseline.json")
    states = [
        (Path(m.path).name, f.code, f.baseline_state) for m in report.models for f in m.findings
    ]
    assert states == [
        (Path(m["path"]).name, f["code"], f["baseline_state"])
        for m in cli["models"]
        for f in m["findings"]
    ]
    known = {
        Path(m.path).name
        for m in report.models
        for f in m.findings
        if f.baseline_state == "unchanged"
    }
    assert known == {"opset14_training_mode.onnx", "untrained_stats.onnx"}
    assert report.baseline["new"] == cli["baseline"]["new"] > 0
    assert report.exit_code("warning") == 1  # the new error still fails

    (repo / "models" / "opset9_training.onnx").unlink()
    assert bnlint.lint("models", baseline="baseline.json").exit_code("warning") == 0
    assert without.exit_code("warning") == 1  # known findings fail without the baseline
    with pytest.raises(BaselineError):
        bnlint.lint("models", baseline="missing.json")
