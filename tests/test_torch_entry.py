"""``module:factory`` and ``file.py:factory`` entry points through the CLI."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

MODELS = textwrap.dedent(
    """
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8, momentum=0.99)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.bn(self.conv(x)))


    def build():
        return Net()


    def build_eval():
        return Net().eval()


    def broken():
        raise ValueError("no weights here")


    def not_a_model():
        return 42


    def example_inputs():
        return (torch.randn(2, 3, 8, 8),)
    """
)


@pytest.fixture
def models_file(tmp_path: Path) -> Path:
    path = tmp_path / "user_models.py"
    path.write_text(MODELS)
    return path


def test_file_factory_lints_in_training_phase(models_file: Path, run_cli) -> None:
    result = run_cli([f"{models_file}:build", "--format", "json"], exit_code=1)
    [model] = result.json["models"]
    assert model["format"] == "module" and model["status"] == "ok"
    found = {(f["code"], f["scope"]) for f in model["findings"]}
    assert ("BN015", "bn") in found  # momentum 0.99
    assert ("BN002", "bn") in found  # training phase: batch 2 from example_inputs()
    assert ("BN007", "conv") in found
    assert not any(code == "BN003" for code, _ in found)
    bn002 = next(f for f in model["findings"] if f["code"] == "BN002")
    assert "example input" in bn002["message"]
    assert not (models_file.parent / "__pycache__").exists()  # imported without bytecode


def test_module_factory_from_the_working_directory(
    models_file: Path, run_cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = models_file.parent / "entry_pkg_for_bnlint"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "nets.py").write_text(MODELS)
    monkeypatch.chdir(models_file.parent)
    args = ["entry_pkg_for_bnlint.nets:build_eval", "--select", "BN011", "--format", "json"]
    result = run_cli(args, exit_code=0)
    [finding] = result.json["models"][0]["findings"]
    assert finding["scope"] == "bn" and "can be folded into Conv 'conv'" in finding["message"]
    assert not (package / "__pycache__").exists()


def test_input_shape_replaces_example_inputs(models_file: Path, run_cli) -> None:
    args = [f"{models_file}:build", "--input-shape", "x:1x3x1x1", "--select", "BN002"]
    result = run_cli([*args, "--format", "json"], exit_code=1)
    [finding] = result.json["models"][0]["findings"]
    assert finding["severity"] == "error"  # one value per channel: PyTorch raises
    assert "--input-shape" in finding["message"]


@pytest.mark.parametrize(
    ("factory", "problem"),
    [
        ("broken", "broken() raised ValueError: no weights here"),
        ("not_a_model", "not_a_model() returned int, not a torch.nn.Module"),
        ("missing", "user_models.py defines no 'missing' (it defines: Net, broken, build"),
        ("buidl", "user_models.py defines no 'buidl'; did you mean 'build'?"),
    ],
)
def test_factory_errors_end_in_one_error_line(
    models_file: Path, run_cli, factory: str, problem: str
) -> None:
    result = run_cli([f"{models_file}:{factory}"], exit_code=2)
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("bnlint: error: ")]
    assert errors == [lines[-1]] and problem in lines[-1]
    assert "bnlint_user_model" not in result.stderr, "no internal module name leaks"
    if factory != "broken":
        assert len(lines) == 1


def test_an_exception_in_the_factory_shows_the_users_traceback(models_file: Path, run_cli) -> None:
    """As pytest shows a collection error: the user's frames (file, line, code), not
    bnlint's, then the one-line error (issue 15: no traceback even with --debug)."""
    lines = run_cli([f"{models_file}:broken"], exit_code=2).stderr.strip().splitlines()
    assert lines[0] == f"bnlint: {models_file}:broken: your code raised an exception:"
    assert lines[1] == "your code's traceback (most recent call last):"
    frames = [line for line in lines if line.startswith('  File "')]
    assert frames and all(line.startswith(f'  File "{models_file}"') for line in frames), lines
    assert lines[-2] == "ValueError: no weights here"


def test_import_errors_are_one_line(tmp_path: Path, run_cli) -> None:
    (tmp_path / "bad_import.py").write_text("import no_such_package_for_bnlint\n")
    result = run_cli([f"{tmp_path / 'bad_import.py'}:build"], exit_code=2)
    assert "ModuleNotFoundError" in result.stderr
    result = run_cli(["no_such_package_for_bnlint.models:build"], exit_code=2)
    assert "importing no_such_package_for_bnlint.models failed" in result.stderr
