"""The command line: formats, exit codes, selection, subcommands."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bnlint._version import __version__
from bnlint.report.json_report import SCHEMA_VERSION
from tests.helpers import validate_report
from tests.zoo import onnx_zoo

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def training_model(tmp_path: Path) -> Path:
    return onnx_zoo.opset14_training_mode(tmp_path / "t")  # BN003 error


@pytest.fixture
def clean_model(tmp_path: Path) -> Path:
    return onnx_zoo.resnet_opset15(tmp_path / "c")  # healthy: 3 foldable BNs (BN011 is opt-in)


def test_text_output_is_ruff_like(run_cli, training_model: Path) -> None:
    result = run_cli([training_model], exit_code=1)
    lines = result.stdout.splitlines()
    assert lines[0] == (
        f"{training_model}:bn [BatchNormalization] BN003 BatchNormalization runs in training mode "
        "(training_mode=1) in a model meant for inference: it normalises with batch statistics "
        "instead of its running statistics"
    )
    assert lines[1].startswith("  = help: ")
    assert re.fullmatch(
        r"Found 1 finding \(1 error\) in 1 model \(1 BatchNorm, \d+ rules\)\.", lines[-1]
    ), lines
    assert len(lines) == 3, "the training-mode BN's fold verdict repeats BN003: not shown"
    assert "\x1b[" not in result.stdout, "no colour when stdout is not a terminal"


def test_check_subcommand_and_python_m_are_the_same(run_cli, training_model: Path) -> None:
    direct = run_cli([training_model], exit_code=1).stdout
    assert run_cli(["check", training_model], exit_code=1).stdout == direct
    module = subprocess.run(
        [sys.executable, "-m", "bnlint", str(training_model)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert module.returncode == 1 and module.stdout == direct


@pytest.mark.parametrize(
    ("fail_on", "exit_code"), [("error", 1), ("warning", 1), ("info", 1), ("never", 0)]
)
def test_fail_on_thresholds(run_cli, training_model: Path, fail_on: str, exit_code: int) -> None:
    run_cli([training_model, "--fail-on", fail_on], exit_code=exit_code)


def test_info_findings_pass_the_default_gate(run_cli, clean_model: Path) -> None:
    run_cli([clean_model, "--select", "BN011"], exit_code=0)
    run_cli([clean_model, "--select", "BN011", "--fail-on", "info"], exit_code=1)


def test_a_healthy_model_is_one_line_naming_what_was_checked(run_cli, clean_model: Path) -> None:
    """A clean run says so in one line: models, BatchNorms, rules, and the fold command
    instead of one BN011 note per layer (issue 15: 53 notes on a healthy ResNet-50)."""
    (line,) = run_cli([clean_model], exit_code=0).stdout.splitlines()
    match = re.fullmatch(
        r"All checks passed: 1 model, 3 BatchNorms, (\d+) rules\. 3 of 3 BatchNorms can be "
        r"folded: `bnlint fold (\S+) -o (\S+)`",
        line,
    )
    assert match, line
    assert match.group(2) == str(clean_model)
    assert match.group(3) == str(clean_model.with_name("resnet_opset15-folded.onnx"))
    assert run_cli([clean_model, "--fail-on", "info"], exit_code=0).stdout == f"{line}\n"


def test_exit_zero_keeps_unreadable_inputs_at_2(
    run_cli, training_model: Path, tmp_path: Path
) -> None:
    run_cli([training_model, "--exit-zero"], exit_code=0)
    run_cli([training_model, tmp_path / "missing.onnx", "--exit-zero"], exit_code=2)


def test_json_output_matches_the_contract(run_cli, training_model: Path) -> None:
    data = run_cli([training_model, "--format", "json"], exit_code=1).json
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["tool"] == {"name": "bnlint", "version": __version__}
    (model,) = data["models"]
    assert [f["code"] for f in model["findings"]] == ["BN003"]
    assert (model["batchnorms"], model["foldable"]) == (1, 0)
    first = model["findings"][0]
    assert first["node"] == "bn" and first["severity"] == "error"
    assert first["location"]["node_index"] == 1
    assert first["url"] == "https://bnlint.github.io/bnlint/rules/BN003/"
    assert data["summary"]["by_code"] == {"BN003": 1}
    assert data["summary"]["by_severity"] == {"error": 1, "warning": 0, "info": 0}
    assert (data["summary"]["batchnorms"], data["summary"]["foldable"]) == (1, 0)
    assert "BN003" in data["summary"]["rules_run"] and "BN011" not in data["summary"]["rules_run"]


def test_output_file_is_written_and_stdout_stays_empty(
    run_cli, training_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    result = run_cli([training_model, "--format", "json", "-o", out], exit_code=1)
    assert result.stdout == ""
    validate_report(json.loads(out.read_text()))


def test_statistics(run_cli, training_model: Path, clean_model: Path) -> None:
    args = [training_model, clean_model, "--statistics", "--extend-select", "BN011"]
    result = run_cli(args, exit_code=1)
    assert result.stdout.splitlines() == [
        "3\tBN011\tfoldable-batchnorm\t[info]",
        "1\tBN003\tbatchnorm-training-mode-at-inference\t[error]",
    ]


def test_quiet_prints_findings_only(run_cli, training_model: Path) -> None:
    lines = run_cli([training_model, "-q"], exit_code=1).stdout.splitlines()
    assert len(lines) == 1 and " BN003 " in lines[0]


@pytest.mark.parametrize("selector", ["BN003", "BN00", "batchnorm-training-mode-at-inference"])
def test_select_by_code_prefix_or_name(run_cli, training_model: Path, selector: str) -> None:
    data = run_cli([training_model, "--select", selector, "--format", "json"], exit_code=1).json
    assert [f["code"] for f in data["models"][0]["findings"]] == ["BN003"]


def test_ignore_and_extend_select(run_cli, training_model: Path) -> None:
    data = run_cli([training_model, "--ignore", "BN003", "--format", "json"], exit_code=0).json
    assert [f["code"] for f in data["models"][0]["findings"]] == []
    data = run_cli(
        [training_model, "--select", "BN011", "--extend-select", "BN003", "--format", "json"],
        exit_code=1,
    ).json
    # BN011's "cannot be folded: it runs in training mode, see BN003" repeats BN003's cause
    assert [f["code"] for f in data["models"][0]["findings"]] == ["BN003"]
    # the most specific selector wins, as in ruff
    data = run_cli(
        [training_model, "--ignore", "BN0", "--select", "BN011", "--format", "json"], exit_code=0
    ).json
    assert [f["code"] for f in data["models"][0]["findings"]] == ["BN011"]


def test_unknown_selector_is_a_usage_error(run_cli, training_model: Path) -> None:
    result = run_cli([training_model, "--select", "BN999"], exit_code=2)
    assert result.stderr.strip() == "bnlint: error: command line: unknown rule selector 'BN999'"


def test_folder_is_walked_for_models(run_cli, tmp_path: Path) -> None:
    onnx_zoo.opset14_training_mode(tmp_path / "models" / "a")
    onnx_zoo.resnet_opset15(tmp_path / "models" / "b")
    onnx_zoo.resnet_opset15(tmp_path / "models" / ".venv")
    (tmp_path / "models" / "notes.txt").write_text("not a model")
    data = run_cli([tmp_path / "models", "--format", "json"], exit_code=1).json
    assert sorted(Path(m["path"]).parent.name for m in data["models"]) == ["a", "b"]


def test_rules_lists_every_rule(run_cli) -> None:
    lines = run_cli(["rules"]).stdout.splitlines()
    codes = [line.split()[0] for line in lines]
    assert "BN003" in codes and "BN011" in codes and "BN902" in codes
    assert codes == sorted(codes)
    rows = json.loads(run_cli(["rules", "--format", "json"]).stdout)
    bn003 = next(row for row in rows if row["code"] == "BN003")
    assert bn003["severity"] == "error" and bn003["phases"] == ["inference"]


def test_explain_prints_the_documentation(run_cli) -> None:
    text = run_cli(["explain", "BN003"]).stdout
    assert text.startswith("# BN003 batchnorm-training-mode-at-inference")
    for heading in ("## What it detects", "## Why it matters", "## Example", "## Fix"):
        assert heading in text
    assert run_cli(["explain", "foldable-batchnorm"]).stdout.startswith("# BN011")
    assert "unknown rule 'BN777'" in run_cli(["explain", "BN777"], exit_code=2).stderr


def test_version_and_help(run_cli) -> None:
    assert run_cli(["--version"]).stdout.strip() == f"bnlint {__version__}"
    assert "Lint Batch Normalization" in run_cli(["--help"]).stdout


def test_a_file_named_like_a_command_is_linted_with_check(
    run_cli, tmp_path: Path, monkeypatch
) -> None:
    folder = tmp_path / "w"
    path = onnx_zoo.opset14_training_mode(folder)
    path.rename(folder / "rules")
    monkeypatch.chdir(folder)
    assert "BN003" in run_cli(["check", "rules"], exit_code=1).stdout


@pytest.mark.parametrize(
    ("env", "flag", "coloured"),
    [
        ({}, "always", True),
        ({}, "never", False),
        ({"FORCE_COLOR": "1"}, "auto", True),
        ({"NO_COLOR": "1", "FORCE_COLOR": "1"}, "auto", False),
    ],
)
def test_colour(run_cli, training_model: Path, monkeypatch, env, flag, coloured) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    stdout = run_cli([training_model, "--color", flag], exit_code=1).stdout
    assert ("\x1b[1;31mBN003" in stdout) is coloured


def test_terminal_output_neutralises_control_characters(run_cli, tmp_path: Path) -> None:
    import onnx

    from tests.zoo.onnx_builder import GraphBuilder

    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 3, 4, 4])
    model = g.model([g.bn(g.conv(x, 2), name="evil\x1b[2J\nname", training=True)])
    path = tmp_path / "evil.onnx"
    onnx.save(model, path)
    stdout = run_cli([path, "-q", "--select", "BN003"], exit_code=1).stdout
    assert "\x1b" not in stdout and stdout.count("\n") == 1
    assert "evil\\x1b[2J\\x0aname" in stdout


def test_real_executable_runs(training_model: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "bnlint", str(training_model), "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    validate_report(json.loads(result.stdout))


def test_source_line_is_shown_under_the_finding(run_cli, tmp_path: Path) -> None:
    import onnx

    from tests.zoo.onnx_builder import GraphBuilder

    g = GraphBuilder(opset=18)
    x = g.input("x", [1, 3, 4, 4])
    model = g.model([g.bn(g.conv(x, 2), name="bn", training=True)])
    node = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    onnx.helper.set_metadata_props(
        node,
        {
            "pkg.torch.onnx.stack_trace": 'File "/src/net.py", line 42, in forward\n    x = self.bn(x)'
        },
    )
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    lines = run_cli([path, "--select", "BN003"], exit_code=1).stdout.splitlines()
    assert lines[1] == "  --> /src/net.py:42"
    assert all(
        "-->" not in line
        for line in run_cli([path, "--select", "BN003", "-q"], exit_code=1).stdout.splitlines()
    )
