"""A few KB never hang bnlint or take gigabytes, and Ctrl-C always works (items 6 and 8).

Each model of :mod:`tests.hostile.bounded_models` goes through the real executable under
a 3 GB address-space limit and a timeout of ten times a generous expected duration; the
peak resident memory must stay under 1 GiB (a guard against an explosion: the files are a
few KB, a normal run takes ~200 MB). What bnlint could not do is a BN901 note, never a
silent skip; what it refuses is one error line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.hostile import bounded_models
from tests.hostile.runner import BNLINT, assert_behaved, run_attack

GUARD_MIB = 1024


def _lint(model: Path, tmp_path: Path, expected_seconds: float = 3.0):
    report = tmp_path / "report.json"
    attack = run_attack(
        [model, "--format", "json", "-o", report],
        tmp_path,
        allowed=[report],
        expected_seconds=expected_seconds,
    )
    assert_behaved(attack, exit_code=1)
    assert attack.peak_mib < GUARD_MIB, f"peak {attack.peak_mib} MiB"
    (result,) = json.loads(report.read_text())["models"]
    return result["findings"]


def _notes(findings: list[dict]) -> str:
    return " ".join(f["message"] for f in findings if f["code"] == "BN901")


def test_an_einsum_that_loops_onnx_is_never_given_to_it(tmp_path: Path) -> None:
    findings = _lint(bounded_models.einsum(tmp_path / "m" / "einsum.onnx"), tmp_path)
    assert "BN003" in {f["code"] for f in findings}
    assert "shape inference skipped: node" in _notes(findings)
    assert "a term holds more than one '...'" in _notes(findings)


def test_a_value_sized_tensor_keeps_data_propagation_off(tmp_path: Path) -> None:
    model = bounded_models.value_sized_concat(tmp_path / "m" / "concat.onnx")
    assert model.stat().st_size < 2048
    findings = _lint(model, tmp_path)
    assert "1-D tensor of 1000000000 values" in _notes(findings)
    assert "data propagation skipped" in _notes(findings)


def test_constant_folding_checks_the_size_before_building(tmp_path: Path) -> None:
    findings = _lint(bounded_models.repeated_concat(tmp_path / "m" / "concat.onnx"), tmp_path)
    assert "BN003" in {f["code"] for f in findings}


def test_doubling_functions_are_refused_before_inlining(tmp_path: Path) -> None:
    model = bounded_models.doubling_functions(tmp_path / "m" / "functions.onnx")
    assert model.stat().st_size < 8192
    attack = run_attack([model], tmp_path)
    assert_behaved(attack, exit_code=2, error="model-local functions expand to over 2000000")
    assert attack.peak_mib < GUARD_MIB


def test_huge_name_scopes_metadata_is_read_from_its_end(tmp_path: Path) -> None:
    findings = _lint(bounded_models.huge_name_scopes(tmp_path / "m" / "scopes.onnx"), tmp_path)
    (bn003,) = [f for f in findings if f["code"] == "BN003"]
    assert bn003["scope"] == "features.bn"


def test_ctrl_c_ends_a_looping_shape_inference_at_once(tmp_path: Path) -> None:
    """The backstop under the grammar check: onnx's inference on the looping equation runs
    in a child with SIGINT at its default action; Ctrl-C (SIGINT to the process group, as a
    terminal sends it) ends parent and child at once, the deadline would end the child."""
    model = bounded_models.einsum(tmp_path / "einsum.onnx")
    script = (
        "import sys\n"
        "from bnlint.loaders.onnx_bounded import InferenceStopped, infer_bounded\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "print('ready', flush=True)\n"
        "infer_bounded(data, True)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        time.sleep(0.5)  # inside onnx's loop, in the child
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.stderr is not None and b"KeyboardInterrupt" in process.stderr.read()
    with pytest.raises(ProcessLookupError):  # no child left looping
        os.killpg(process.pid, 0)


def test_the_deadline_ends_a_looping_shape_inference(tmp_path: Path, monkeypatch) -> None:
    from bnlint.loaders import onnx_bounded

    model = bounded_models.einsum(tmp_path / "einsum.onnx")
    monkeypatch.setattr(onnx_bounded, "BASE_SECONDS", 0.5)
    with pytest.raises(onnx_bounded.InferenceStopped, match="did not finish within"):
        onnx_bounded.infer_bounded(model.read_bytes(), True)


def test_ctrl_c_stops_bnlint_with_one_line(tmp_path: Path) -> None:
    """SIGINT while bnlint runs (here inside a rule plug-in that sleeps): exit 130 with
    ``bnlint: interrupted``, no traceback."""
    started = tmp_path / "STARTED"
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "slow.py").write_text(
        f"import pathlib, time\npathlib.Path({str(started)!r}).write_text('x')\ntime.sleep(300)\n"
    )
    model = bounded_models.value_sized_concat(tmp_path / "m" / "model.onnx", length=4)
    process = subprocess.Popen(
        [*BNLINT, str(model), "--rules-dir", str(plugins)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.05)
        assert started.exists(), process.stderr.read() if process.stderr else ""
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.stderr is not None
    assert (code, process.stderr.read().decode()) == (130, "bnlint: interrupted\n")
