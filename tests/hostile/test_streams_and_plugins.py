"""Plugins leave no bytecode, foreign JSON is bounded, a closed pipe is no error (item 11)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.hostile import trust_files
from tests.hostile.runner import (
    BNLINT,
    ONNX_ADDRESS_SPACE,
    address_limit,
    assert_behaved,
    run_attack,
)
from tests.zoo import onnx_zoo


def test_rules_dir_gets_no_pycache(tmp_path: Path) -> None:
    """Bytecode writes enabled in the environment, as on most machines: still none."""
    model = onnx_zoo.opset14_training_mode(tmp_path / "models")
    plugins = trust_files.rules_dir(tmp_path / "plugins", marker := tmp_path / "MARKER")
    attack = run_attack(
        [model, "--rules-dir", plugins],
        tmp_path,
        watch=[tmp_path / "models", plugins],
        env={"PYTHONDONTWRITEBYTECODE": ""},
    )
    assert_behaved(attack, exit_code=1)
    assert marker.exists()  # the plugin was imported: the user asked for it
    assert sorted(p.name for p in plugins.iterdir()) == ["evil_rule.py"]


def test_a_deeply_nested_baseline_is_one_error_line(tmp_path: Path) -> None:
    model = onnx_zoo.opset14_training_mode(tmp_path / "models")
    (baseline := tmp_path / "baseline.json").write_text('{"findings": ' + "[" * 100_000)
    attack = run_attack([model, "--baseline", baseline], tmp_path)
    assert_behaved(attack, exit_code=2, error="nested deeper than 64 levels")
    (baseline := tmp_path / "deep.json").write_text("[" * 60 + "]" * 60)
    assert_behaved(
        run_attack([model, "--baseline", baseline], tmp_path),
        exit_code=2,
        error="not a bnlint baseline",
    )


def _head(args: list[str], tmp_path: Path) -> tuple[int, bytes, str]:
    """Run bnlint with stdout read 10 bytes deep, then closed (``| head -c 10``)."""
    process = subprocess.Popen(
        [*BNLINT, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HOME": str(tmp_path)},
        preexec_fn=address_limit(ONNX_ADDRESS_SPACE),
    )
    assert process.stdout is not None and process.stderr is not None
    head = process.stdout.read(10)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    return process.wait(timeout=60), head, stderr


def test_a_reader_that_stops_early_is_no_error(tmp_path: Path) -> None:
    """``bnlint … | head -c 10``: no traceback, no "internal error", and the exit code is
    still the lint verdict (notes only: 0)."""
    models = tmp_path / "models"
    model = onnx_zoo.resnet_opset15(models)
    code, head, stderr = _head([str(model), "--format", "html"], tmp_path)
    assert (code, head, stderr) == (0, b"<!DOCTYPE ", "")
    for index in range(120):  # --show-settings prints ~1 KB per model
        os.link(model, models / f"copy{index}.onnx")
    code, head, stderr = _head([str(models), "--show-settings"], tmp_path)
    assert (code, head[:2], stderr) == (0, b"# ", "")
