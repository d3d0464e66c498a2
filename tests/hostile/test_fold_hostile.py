"""``bnlint fold`` and ``bnlint verify --against`` on hostile files (issue 12, items 4, 8, 10).

Every run is the real ``bnlint`` executable under a time limit (ten times a generous
expected duration) and an address-space cap, with the inputs fingerprinted before and
after (:mod:`tests.hostile.runner`).

- A folded model whose external data names a file that exists only in the working
  directory, where it is a FIFO: a read relative to the working directory (what onnx's
  own reader does) would block until killed. bnlint reads through its resolver, which
  looks only beside the model: one error line, exit 2.
- A folded model whose constant arithmetic would allocate 320 GB from a few hundred
  bytes: refused before allocating, one error line, exit 2.
- ``bnlint fold -o`` onto the input's external data, onto a character device and onto
  the process's own stdout: refused, written in place, and written to the descriptor
  (the report then goes to stderr).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests import fold_models as fm
from tests.hostile.runner import assert_behaved, run_attack


def _original(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "original.onnx"
    onnx.save(fm.conv_bn(), str(path))
    return path


def _folded_with(folder: Path, edit) -> Path:
    folded = fm.hand_fold(fm.conv_bn())
    edit(folded)
    path = folder / "folded.onnx"
    onnx.save(folded, str(path))
    return path


def test_verify_against_never_reads_external_data_relative_to_the_working_directory(
    tmp_path: Path,
) -> None:
    models = tmp_path / "models"
    original = _original(models)

    def externalise(model: onnx.ModelProto) -> None:
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        tensor = next(t for t in model.graph.initializer if t.name == conv.input[1])
        size = len(tensor.raw_data) or 4 * int(np.prod(tensor.dims))
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "decoy.bin"), ("offset", "0"), ("length", str(size))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value

    folded = _folded_with(models, externalise)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    os.mkfifo(elsewhere / "decoy.bin")  # opening it for reading blocks: a hang is a failure
    attack = run_attack(
        ["verify", folded, "--against", original, "--format", "json"],
        tmp_path,
        cwd=elsewhere,
        expected_seconds=6,
    )
    assert_behaved(attack, exit_code=2, error="decoy.bin")
    assert stat.S_ISFIFO(os.lstat(elsewhere / "decoy.bin").st_mode)


def test_verify_against_refuses_constant_arithmetic_before_allocating(tmp_path: Path) -> None:
    models = tmp_path / "models"
    original = _original(models)

    def bomb(model: onnx.ModelProto) -> None:
        conv = next(n for n in model.graph.node if n.op_type == "Conv")
        bias = conv.input[2]
        for tensor in model.graph.initializer:
            if tensor.name == bias:
                tensor.name = "bias_small"
        shape = numpy_helper.from_array(np.array([200_000, 200_000], np.int64), "huge_shape")
        starts = numpy_helper.from_array(np.array([0], np.int64), "zero")
        ends = numpy_helper.from_array(np.array([1], np.int64), "one")
        model.graph.initializer.extend([shape, starts, ends])
        nodes = [
            helper.make_node("ConstantOfShape", ["huge_shape"], ["plane"]),  # 320 GB of float32
            helper.make_node("ReduceMax", ["plane"], ["scalar"], keepdims=0),
            helper.make_node("Add", ["bias_small", "scalar"], [bias]),
        ]
        for offset, node in enumerate(nodes):
            model.graph.node.insert(offset, node)

    folded = _folded_with(models, bomb)
    assert folded.stat().st_size < 200_000
    attack = run_attack(["verify", folded, "--against", original], tmp_path, expected_seconds=6)
    assert_behaved(attack, exit_code=2, error="refused before allocating")


def test_fold_output_onto_the_inputs_external_data_is_refused(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    model = fm.conv_bn(cin=16, cout=16)
    source = models / "m.onnx"
    onnx.save(model, str(source), save_as_external_data=True, location="w.bin", size_threshold=0)
    attack = run_attack(["fold", source, "-o", models / "w.bin"], tmp_path, expected_seconds=6)
    assert_behaved(attack, exit_code=2, error="same file as the input")


def test_fold_writes_devices_in_place_and_stdout_gets_only_the_model(tmp_path: Path) -> None:
    models = tmp_path / "models"
    source = _original(models)
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a /dev/null of our own
    attack = run_attack(["fold", source, "-o", null], tmp_path, expected_seconds=6, allowed=[null])
    assert_behaved(attack, exit_code=0, stderr_lines=1)
    assert stat.S_ISCHR(os.lstat(null).st_mode), "the device was replaced by a file"
    attack = run_attack(["fold", source, "-o", "/dev/fd/1"], tmp_path, expected_seconds=6)
    assert attack.returncode == 0, attack.stderr
    assert "verdict" in attack.stderr and "verdict" not in attack.stdout
    assert "Conv" in attack.stdout  # the serialized model names its op types
