"""``check --verify`` and ``verify PATH``; without onnxruntime, the algebraic level and BN905."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests import fold_models as fm
from tests.helpers import save, validate_report
from tests.rules.test_bn012 import float16_overflow

REPO = Path(__file__).resolve().parents[1]
NO_ORT = "import sys; sys.modules['onnxruntime'] = None; from bnlint.cli import main; main()"


def run_without_onnxruntime(*args: object) -> tuple[int, dict | None, str]:
    """bnlint in a subprocess where ``import onnxruntime`` fails, as without the ort extra."""
    done = subprocess.run(
        [sys.executable, "-c", NO_ORT, *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in done.stderr, done.stderr
    data = json.loads(done.stdout) if done.stdout.startswith("{") else None
    if data is not None:
        validate_report(data)
    return done.returncode, data, done.stdout + done.stderr


def codes(data: dict) -> list[str]:
    return sorted(f["code"] for f in data["models"][0]["findings"])


def test_check_verify_runs_the_dynamic_rules(tmp_path, run_cli) -> None:
    path = save(fm.training_bn(), tmp_path, "train.onnx")
    plain = run_cli(["check", path, "--format", "json", "--select", "BN003,BN012,BN018"], 1)
    assert codes(plain.json) == ["BN003"]
    verified = run_cli(
        ["check", path, "--verify", "--format", "json", "--select", "BN003,BN012,BN018"], 1
    )
    assert codes(verified.json) == ["BN003", "BN018"]


def test_verify_path_selects_bn012_and_bn018(tmp_path, run_cli) -> None:
    clean = save(fm.conv_bn(), tmp_path, "clean.onnx")
    assert run_cli(["verify", clean, "--format", "json"], 0).json["summary"]["findings"] == 0
    broken = save(float16_overflow(), tmp_path, "broken.onnx")
    result = run_cli(["verify", broken, "--format", "json"], 1)
    assert codes(result.json) == ["BN012"]


def test_without_onnxruntime_verification_is_algebraic_and_says_so(tmp_path) -> None:
    clean = save(fm.conv_bn(), tmp_path, "clean.onnx")
    code, data, _ = run_without_onnxruntime(
        "check", clean, "--verify", "--format", "json", "--select", "BN012,BN018"
    )
    assert code == 0
    notes = [f for f in data["models"][0]["findings"] if f["code"] == "BN905"]
    assert {n["evidence"]["rule"] for n in notes} == {"BN012", "BN018"}
    assert all(n["severity"] == "info" for n in notes)
    assert any("algebraic level only" in n["message"] for n in notes)
    assert any("bnlint[ort]" in n["message"] for n in notes)

    broken = save(float16_overflow(), tmp_path, "broken.onnx")
    code, data, _ = run_without_onnxruntime(
        "check", broken, "--verify", "--format", "json", "--select", "BN012"
    )
    assert code == 1
    assert codes(data) == ["BN012", "BN905"]
    (bn012,) = [f for f in data["models"][0]["findings"] if f["code"] == "BN012"]
    assert bn012["evidence"]["problem_code"] == "overflow"
    assert bn012["evidence"]["numeric"] is None, "no runtime: the algebraic level decided"
    levels = data["models"][0]["verification"]["levels"]
    assert levels["algebraic"] is True and levels["numeric"] is False


def test_fold_without_onnxruntime_writes_an_algebraically_verified_model(tmp_path) -> None:
    source = save(fm.conv_bn(), tmp_path, "in.onnx")
    code, _, output = run_without_onnxruntime("fold", source, "-o", tmp_path / "out.onnx")
    assert code == 0, output
    assert "BN905" in output and "algebraic level only" in output
    assert (tmp_path / "out.onnx").exists()


def test_linting_without_verify_never_imports_onnxruntime(tmp_path) -> None:
    path = save(fm.conv_bn(dtype=np.float32), tmp_path, "m.onnx")
    script = (
        "import sys; from bnlint.api import lint; "
        f"lint({str(path)!r}); print('onnxruntime' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.stdout.strip() == "False", done.stderr
