"""Configuration discovery, precedence and validation (ruff semantics)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.zoo import onnx_zoo


def codes(result) -> list[str]:
    return [f["code"] for m in result.json["models"] for f in m["findings"]]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """project/models/sub/m.onnx: a training-mode BN (BN003; BN011 only when selected)."""
    onnx_zoo.opset14_training_mode(tmp_path / "project" / "models" / "sub")
    return tmp_path / "project"


def model_path(project: Path) -> Path:
    return project / "models" / "sub" / "opset14_training_mode.onnx"


def test_pyproject_tool_table_is_found_walking_up(project: Path, run_cli) -> None:
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.bnlint]\nignore = ["BN011"]\n'
    )
    assert codes(run_cli([model_path(project), "--format", "json"], exit_code=1)) == ["BN003"]


def test_pyproject_without_tool_table_is_skipped(project: Path, run_cli) -> None:
    (project / "models" / "pyproject.toml").write_text('[project]\nname = "x"\n')
    (project / "bnlint.toml").write_text('ignore = ["BN003"]\n')
    assert codes(run_cli([model_path(project), "--format", "json"], exit_code=0)) == []


def test_nearest_file_wins_without_merging(project: Path, run_cli) -> None:
    (project / "bnlint.toml").write_text('ignore = ["BN003"]\nfail-on = "never"\n')
    (project / "models" / "bnlint.toml").write_text('ignore = ["BN011"]\n')
    # fail-on from the outer file does not leak into the inner one
    assert codes(run_cli([model_path(project), "--format", "json"], exit_code=1)) == ["BN003"]


def test_precedence_inside_one_folder(project: Path, run_cli) -> None:
    folder = project / "models"
    (folder / "pyproject.toml").write_text('[tool.bnlint]\nignore = ["BN003", "BN011"]\n')
    (folder / "bnlint.toml").write_text('ignore = ["BN011"]\n')
    assert codes(run_cli([model_path(project), "--format", "json"], exit_code=1)) == ["BN003"]
    (folder / ".bnlint.toml").write_text('ignore = ["BN003"]\n')
    assert codes(run_cli([model_path(project), "--format", "json"], exit_code=0)) == []


def test_extend_inherits_explicitly(project: Path, run_cli) -> None:
    (project / "base.toml").write_text('ignore = ["BN011"]\nfail-on = "error"\n')
    (project / "models" / "bnlint.toml").write_text('extend = "../base.toml"\n')
    assert codes(run_cli([model_path(project), "--format", "json"], exit_code=1)) == ["BN003"]


def test_explicit_config_overrides_discovery(project: Path, run_cli, tmp_path: Path) -> None:
    (project / "bnlint.toml").write_text('ignore = ["BN003"]\n')
    other = tmp_path / "other.toml"
    other.write_text('ignore = ["BN011"]\n')
    assert codes(
        run_cli([model_path(project), "--config", other, "--format", "json"], exit_code=1)
    ) == ["BN003"]


def test_command_line_overrides_file_values(project: Path, run_cli) -> None:
    (project / "bnlint.toml").write_text('select = ["BN011"]\nfail-on = "never"\n')
    result = run_cli(
        [model_path(project), "--select", "BN003", "--fail-on", "error", "--format", "json"],
        exit_code=1,
    )
    assert codes(result) == ["BN003"]


def test_per_model_ignores_are_relative_to_the_declaring_file(project: Path, run_cli) -> None:
    (project / "bnlint.toml").write_text(
        '[per-model-ignores]\n"models/sub/*.onnx" = ["BN003"]\n"other/*.onnx" = ["BN011"]\n'
    )
    assert codes(run_cli([model_path(project), "--format", "json"], exit_code=0)) == []


def test_per_node_ignores_match_node_names(project: Path, run_cli) -> None:
    (project / "bnlint.toml").write_text(
        '[per-node-ignores]\n"^b[n]$" = ["batchnorm-training-mode-at-inference"]\n'
    )
    assert codes(run_cli([model_path(project), "--format", "json"], exit_code=0)) == []


def test_severity_override(project: Path, run_cli) -> None:
    (project / "bnlint.toml").write_text('[severity]\nBN003 = "info"\n')
    result = run_cli([model_path(project), "--format", "json"], exit_code=0)
    assert {f["severity"] for f in result.json["models"][0]["findings"]} == {"info"}


def test_phase_from_config(project: Path, run_cli) -> None:
    (project / "bnlint.toml").write_text('phase = "training"\n')
    result = run_cli(
        [model_path(project), "--select", "BN003,BN011", "--format", "json"], exit_code=0
    )
    assert codes(result) == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('selct = ["BN003"]\n', "unknown configuration key 'selct'"),
        ('select = ["BN999"]\n', "unknown rule selector 'BN999'"),
        ('fail-on = "sometimes"\n', "fail-on must be one of error, warning, info, never"),
        ("train-batch-size = 0\n", "train-batch-size must be a positive integer"),
        ('[severity]\nBN003 = "fatal"\n', "unknown severity 'fatal'"),
        (
            "[foldable-batchnorm]\nthreshold = 3\n",
            "unknown option 'threshold' for foldable-batchnorm",
        ),
        ("[no-such-rule]\nx = 1\n", "line 1: unknown configuration key 'no-such-rule'"),
        ('[per-node-ignores]\n"(" = ["BN003"]\n', "bad regex"),
        (
            '[missing-norm-before-activation]\nignore = ["head["]\n',
            "missing-norm-before-activation.ignore: bad regex",
        ),
        (
            '[missing-norm-before-activation]\nmin-normalized-fraction = "half"\n',
            "min-normalized-fraction must be float",
        ),
        ("select = [\n", "invalid TOML"),
    ],
)
def test_invalid_configuration_is_exit_2_with_one_line(
    project: Path, run_cli, text: str, problem: str
) -> None:
    (project / "bnlint.toml").write_text(text)
    result = run_cli([model_path(project)], exit_code=2)
    (line,) = result.stderr.splitlines()
    assert line.startswith("bnlint: error: ") and problem in line


def test_show_settings_names_each_origin(project: Path, run_cli) -> None:
    (project / "bnlint.toml").write_text('phase = "finetune"\n')
    stdout = run_cli([model_path(project), "--show-settings", "--target-dtype", "float16"]).stdout
    assert f'phase = "finetune"  # {(project / "bnlint.toml").resolve()}' in stdout
    assert 'target-dtype = "float16"  # command line' in stdout
    assert 'fail-on = "warning"  # default' in stdout


def test_input_shape_from_config(project: Path, run_cli, tmp_path: Path) -> None:
    path = onnx_zoo.symbolic_batch(tmp_path / "sym")
    (tmp_path / "sym" / "bnlint.toml").write_text('[input-shape]\nx = "2x3x16x16"\n')
    stdout = run_cli([path, "--show-settings"]).stdout
    assert "\n[input-shape]  # " in stdout and "\nx = [2, 3, 16, 16]\n" in stdout
