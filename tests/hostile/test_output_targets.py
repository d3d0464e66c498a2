"""Output paths that are inputs, devices, FIFOs or the process's own stdout (issue 12, item 10).

The model and its external-data file are built so that neither holds a NUL byte in its
first 4 KB: a guard that sniffs for binary content cannot tell them from a report, only
their identity (device and inode) can. Every run is the real ``bnlint`` executable.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.hostile.runner import assert_behaved, run_attack

# 1.1f is CD CC 8C 3F: no byte of these weights is zero.
NO_NUL = np.float32(1.1)


def _model_with_external_data(folder: Path) -> tuple[Path, Path]:
    """A Conv -> BN(training_mode=1) -> Relu model: BN003, exit 1. Weights in ``weights.bin``."""
    folder.mkdir(parents=True, exist_ok=True)
    channels = 16
    tensors = {
        "conv.weight": np.full((channels, 3, 3, 3), NO_NUL, np.float32),
        **{f"bn.{role}": np.full(channels, NO_NUL, np.float32) for role in ("w", "b", "m", "v")},
    }
    nodes = [
        helper.make_node("Conv", ["x", "conv.weight"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "BatchNormalization",
            ["c", "bn.w", "bn.b", "bn.m", "bn.v"],
            ["n"],
            name="bn",
            training_mode=1,
        ),
        helper.make_node("Relu", ["n"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 8, 8])],
        [numpy_helper.from_array(value, name) for name, value in tensors.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.producer_name = "x" * 5000  # serialized first: the file's first 4 KB are text
    onnx.external_data_helper.convert_model_to_external_data(
        model, all_tensors_to_one_file=True, location="weights.bin", size_threshold=0
    )
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    data = folder / "weights.bin"
    for file in (path, data):
        assert b"\0" not in file.read_bytes()[:4096], file
    return path, data


@pytest.fixture
def model(tmp_path: Path) -> tuple[Path, Path]:
    return _model_with_external_data(tmp_path / "m")


@pytest.mark.parametrize("target", ["model", "data", "symlink", "hardlink"])
def test_an_output_that_is_an_input_is_refused(model, tmp_path: Path, target: str) -> None:
    path, data = model
    output = {"model": path, "data": data}.get(target)
    if target == "symlink":
        (output := tmp_path / "report.json").symlink_to(path)
    elif target == "hardlink":
        os.link(path, output := tmp_path / "report.json")
    attack = run_attack([path, "--format", "json", "-o", output], tmp_path)
    assert_behaved(attack, exit_code=2, error="is the same file as the input")
    assert str(output) in attack.lines[0]


def test_two_outputs_on_one_path_are_refused(model, tmp_path: Path) -> None:
    path, _ = model
    report = tmp_path / "report.md"
    attack = run_attack([path, "-o", report, "--report-md", report], tmp_path)
    assert_behaved(attack, exit_code=2, error="given as two outputs")


def _character_device(tmp_path: Path) -> Path:
    """A null device of our own when we may create one, else the system's /dev/null (which an
    unprivileged process cannot replace either way)."""
    if os.geteuid() != 0:
        return Path("/dev/null")
    device = tmp_path / "null"
    os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return device


def test_a_character_device_is_written_in_place(model, tmp_path: Path) -> None:
    path, _ = model
    device = _character_device(tmp_path)
    attack = run_attack([path, "--format", "json", "-o", device], tmp_path)
    assert_behaved(attack, exit_code=1)
    assert stat.S_ISCHR(os.lstat(device).st_mode)
    assert attack.stdout == ""


@pytest.mark.parametrize("spelling", ["link", "/dev/fd/1"])
def test_own_stdout_is_written_where_the_shell_sent_it(model, tmp_path: Path, spelling) -> None:
    """``-o /dev/stdout`` (here a symlink of our own to /proc/self/fd/1, so that no test
    ever touches the system's /dev/stdout) and its other spellings."""
    path, _ = model
    output = spelling
    if spelling == "link":
        (output := tmp_path / "stdout").symlink_to("/proc/self/fd/1")
    attack = run_attack([path, "--format", "json", "-o", output], tmp_path)
    assert_behaved(attack, exit_code=1)
    assert '"BN003"' in attack.stdout
    if spelling == "link":
        assert os.path.islink(output)


def test_a_fifo_is_written_to_its_reader(model, tmp_path: Path) -> None:
    path, _ = model
    os.mkfifo(fifo := tmp_path / "pipe")
    received = tmp_path / "received.json"
    with open(received, "wb") as sink:
        reader = subprocess.Popen(["cat", str(fifo)], stdout=sink)
        try:
            attack = run_attack(
                [path, "--format", "json", "-o", fifo], tmp_path, allowed=[received, fifo]
            )
            reader.wait(timeout=60)
        finally:
            reader.kill()
    assert_behaved(attack, exit_code=1)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert '"BN003"' in received.read_text()


def test_a_fifo_without_a_reader_is_refused_at_once(model, tmp_path: Path) -> None:
    path, _ = model
    os.mkfifo(fifo := tmp_path / "pipe")
    attack = run_attack([path, "-o", fifo], tmp_path)
    assert_behaved(attack, exit_code=2, error="is a FIFO (named pipe) with no reader")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_new_report_is_written(model, tmp_path: Path) -> None:
    """Control: the guard refuses only what it must."""
    path, _ = model
    report = tmp_path / "out" / "report.json"
    report.parent.mkdir()
    attack = run_attack([path, "--format", "json", "-o", report], tmp_path, allowed=[report])
    assert_behaved(attack, exit_code=1)
    assert '"BN003"' in report.read_text()
