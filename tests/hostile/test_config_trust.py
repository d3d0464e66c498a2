"""A configuration planted next to the models is data (issue 12, item 5).

A pull request can add ``.bnlint.toml`` or ``pyproject.toml`` beside its models. Such a
discovered file may not import code (``rules-dir``, ``arch``), widen reads
(``allowed-data-roots``) or loosen a limit — directly or through ``extend``: the run ends
with one line naming the file, the key and the option that allows it. The same file named
with ``--config`` is trusted (the control: its payload is live).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.hostile import trust_files
from tests.hostile.runner import assert_behaved, run_attack
from tests.zoo import onnx_zoo


def _planted(tmp_path: Path, case: str) -> tuple[Path, Path, Path, str]:
    """(models folder, config file, marker, expected problem) for one planted file."""
    models = tmp_path / "pr" / "models"
    onnx_zoo.opset14_training_mode(models)
    marker = tmp_path / "MARKER"
    rules = trust_files.rules_dir(tmp_path / "pr" / "plugins", marker)
    arch = trust_files.arch_module(tmp_path / "pr", marker)
    if case == "rules-dir":
        config = models / ".bnlint.toml"
        config.write_text(f'rules-dir = ["{rules}"]\n')
        return models, config, marker, "rules-dir imports code"
    if case == "arch in pyproject":
        config = models / "pyproject.toml"
        config.write_text(f'[tool.bnlint]\narch = "{arch}"\n')
        return models, config, marker, "arch imports code"
    if case == "allowed-data-roots via extend":
        (tmp_path / "pr" / "base.toml").write_text('allowed-data-roots = ["/"]\n')
        config = models / "bnlint.toml"
        config.write_text('extend = "../base.toml"\n')
        return models, config, marker, "allowed-data-roots imports code or widens"
    config = models / "bnlint.toml"
    config.write_text(f"max-nodes = {10**12}\n")
    return models, config, marker, "max-nodes = 1000000000000 is looser than the default"


@pytest.mark.parametrize(
    "case", ["rules-dir", "arch in pyproject", "allowed-data-roots via extend", "max-nodes"]
)
def test_a_discovered_configuration_cannot_widen_trust(tmp_path: Path, case: str) -> None:
    models, config, marker, problem = _planted(tmp_path, case)
    attack = run_attack([models, "--format", "json"], tmp_path)
    assert str(config) in attack.stderr
    assert_behaved(attack, exit_code=2, error=problem, markers=[marker])
    assert "--config" in attack.lines[0]
    if case != "max-nodes":
        assert "on the command line" in attack.lines[0]


def test_the_same_file_named_with_config_is_trusted(tmp_path: Path) -> None:
    """Control: the planted rules folder is live code, and --config is the explicit opt-in."""
    models, config, marker, _ = _planted(tmp_path, "rules-dir")
    run_attack([models, "--config", config, "--format", "json"], tmp_path)
    assert marker.exists()


def test_a_discovered_configuration_cannot_fork_a_worker_per_file(tmp_path: Path) -> None:
    """Before: ``jobs = 1000000`` beside 150 copies of a 1 KB model started 150 workers
    (7 GB of resident memory on a 2-core machine); a discovered file now gets at most one
    worker per CPU, a named ``--config`` what it asks."""
    models = tmp_path / "pr" / "models"
    onnx_zoo.opset14_training_mode(models)
    config = models / ".bnlint.toml"
    config.write_text("jobs = 1000000\n")
    shown = run_attack([models, "--show-settings"], tmp_path)
    assert_behaved(shown, exit_code=0)
    assert f"jobs = {os.cpu_count()}  # {config}" in shown.stdout
    named = run_attack([models, "--config", config, "--show-settings"], tmp_path)
    assert "jobs = 1000000" in named.stdout


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('extend = "/dev/zero"\n', "/dev/zero: not a regular file"),  # before: read to OOM
        ('extend = "../fifo"\n', "fifo: not a regular file"),  # before: blocked forever
        ('select = ["\xff"]\n'.encode("latin-1"), "not UTF-8 text (byte 11)"),
        ("x = " + "[" * 50_000 + "]" * 50_000 + "\n", "invalid TOML: nested too deeply"),
    ],
    ids=["dev-zero", "fifo", "latin-1", "deep"],
)
def test_a_discovered_configuration_is_read_as_bounded_data(
    tmp_path: Path, content: str | bytes, problem: str
) -> None:
    """Before: MemoryError as an internal error, a hang, two internal-error tracebacks."""
    models = tmp_path / "pr" / "models"
    onnx_zoo.opset14_training_mode(models)
    os.mkfifo(tmp_path / "pr" / "fifo")
    config = models / ".bnlint.toml"
    if isinstance(content, bytes):
        config.write_bytes(content)
    else:
        config.write_text(content)
    attack = run_attack([models], tmp_path, expected_seconds=3)
    assert_behaved(attack, exit_code=2, error=problem)


def test_a_discovered_configuration_cannot_list_unbounded_ignore_patterns(tmp_path: Path) -> None:
    """Before: 40,000 ``per-model-ignores`` globs (a 1 MB file) were matched against every
    model, twice, past fnmatch's compile cache: 5 s of CPU per model, for every model."""
    models = tmp_path / "pr" / "models"
    onnx_zoo.opset14_training_mode(models)
    globs = "\n".join(f'"x{i:05d}*y*z*" = ["BN003"]' for i in range(40_000))
    (models / ".bnlint.toml").write_text(f"[per-model-ignores]\n{globs}\n")
    attack = run_attack([models], tmp_path, expected_seconds=10)
    assert_behaved(attack, exit_code=2, error="per-model-ignores has 40000 patterns; at most 1000")
