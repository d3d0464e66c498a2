"""``bnlint fold IN -o OUT``: verified, atomic, external data kept external, input protected."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from tests import fold_models as fm
from tests.helpers import save
from tests.zoo.onnx_builder import GraphBuilder


def float16_overflow() -> onnx.ModelProto:
    """gamma / sqrt(var + eps) ~ 6e5: the folded float16 weights overflow to infinity."""
    g = GraphBuilder(dtype=np.float16)
    x = g.input("x", ["N", 3, 8, 8])
    conv = g.conv(x, 4, name="conv")
    params = [
        g.param("bn.weight", np.full(4, 20.0)),
        g.param("bn.bias", np.zeros(4)),
        g.param("bn.running_mean", np.zeros(4)),
        g.param("bn.running_var", np.full(4, 1e-8)),
    ]
    return fm.typed(g, [g.relu(g.bn(conv, name="bn", params=params, eps=1e-9))])


def mixed() -> onnx.ModelProto:
    """One foldable BN, one behind a shared output, one in training mode."""
    g = GraphBuilder()
    x = g.input("x", ["N", 4, 8, 8])
    a = g.relu(g.bn(g.conv(x, 4, name="conv_a"), name="bn_a"))
    b = g.conv(a, 4, name="conv_b")
    shared = g.add(g.bn(b, name="bn_b"), b, name="add")
    out = g.bn(g.conv(shared, 4, name="conv_c"), name="bn_c", training=True)
    return fm.typed(g, [out])


def test_fold_prints_a_verdict_for_every_bn_and_writes_a_valid_model(tmp_path, run_cli) -> None:
    source = save(mixed(), tmp_path, "in.onnx")
    target = tmp_path / "out.onnx"
    result = run_cli(["fold", source, "-o", target], exit_code=0)
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.startswith("bn")}
    assert "folded-correctly  Conv conv_a" in lines["bn_a"]
    assert "not-folded" in lines["bn_b"] and "(producer-shared-output)" in lines["bn_b"]
    assert "not-folded" in lines["bn_c"] and "(training-mode)" in lines["bn_c"]
    assert "1 of 3 BatchNorm folded" in result.stderr
    onnx.checker.check_model(str(target), full_check=True)
    folded = onnx.load(str(target))
    assert fm.op_types(folded).count("BatchNormalization") == 2
    assert fm.max_relative_error(onnx.load(str(source)), folded) <= fm.CRITERION


def test_fold_json_report_has_one_verdict_per_bn(tmp_path, run_cli) -> None:
    source = save(mixed(), tmp_path, "in.onnx")
    result = run_cli(["fold", source, "-o", tmp_path / "out.onnx", "--format", "json"])
    model = result.json["models"][0]
    verdicts = {row["bn"]: row["verdict"] for row in model["verification"]["bns"]}
    assert verdicts == {"bn_a": "folded-correctly", "bn_b": "not-folded", "bn_c": "not-folded"}
    assert not [f for f in model["findings"] if f["code"] == "BN012"]
    provenance = result.json["provenance"]
    assert provenance["invocation"]["argv"][:2] == ["bnlint", "fold"]
    (model,) = provenance["models"]
    assert model["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_fold_refuses_to_overwrite_its_input(tmp_path, run_cli) -> None:
    source = save(fm.conv_bn(), tmp_path, "model.onnx")
    before = source.read_bytes()
    result = run_cli(["fold", source, "-o", source], exit_code=2)
    assert "same file as the input" in result.stderr and "refusing to overwrite" in result.stderr
    (tmp_path / "link.onnx").symlink_to(source)
    run_cli(["fold", source, "-o", tmp_path / "link.onnx"], exit_code=2)
    assert source.read_bytes() == before


def test_failed_verification_writes_nothing_and_exits_1(tmp_path, run_cli) -> None:
    source = save(float16_overflow(), tmp_path, "in.onnx")
    target = tmp_path / "out.onnx"
    result = run_cli(["fold", source, "-o", target], exit_code=1)
    assert "folded-wrongly" in result.stdout and "overflow float16" in result.stdout
    assert "nothing written" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx"]
    run_cli(["fold", source, "-o", target, "--keep", "^bn$"], exit_code=0)
    assert target.exists()


def test_external_data_stays_external_and_passes_the_checker(tmp_path, run_cli) -> None:
    model = fm.zoo_onnx("resnet_small")
    source = save(
        model,
        tmp_path / "in",
        "model.onnx",
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=1024,
    )
    target = tmp_path / "out" / "folded.onnx"
    target.parent.mkdir()
    run_cli(["fold", source, "-o", target], exit_code=0)
    assert sorted(p.name for p in target.parent.iterdir()) == ["folded.onnx", "folded.onnx.data"]
    onnx.checker.check_model(str(target), full_check=True)
    header = onnx.load(str(target), load_external_data=False)
    large = [t for t in header.graph.initializer if t.ByteSize() > 0 and len(t.dims) == 4]
    assert large and all(t.data_location == onnx.TensorProto.EXTERNAL for t in large)
    folded = onnx.load(str(target))
    assert "BatchNormalization" not in fm.op_types(folded)
    assert fm.max_relative_error(onnx.load(str(source)), folded) <= fm.CRITERION


def test_fold_never_overwrites_the_input_external_data(tmp_path, run_cli) -> None:
    source = save(
        fm.conv_bn(cin=16, cout=16),
        tmp_path,
        "a.onnx",
        save_as_external_data=True,
        location="b.onnx.data",
        size_threshold=0,
    )
    data = (tmp_path / "b.onnx.data").read_bytes()
    result = run_cli(["fold", source, "-o", tmp_path / "b.onnx"], exit_code=2)
    assert "external data" in result.stderr
    assert (tmp_path / "b.onnx.data").read_bytes() == data


def test_write_is_atomic_when_saving_fails(tmp_path, run_cli, monkeypatch) -> None:
    source = save(fm.conv_bn(), tmp_path, "in.onnx")
    target = tmp_path / "out.onnx"
    target.write_bytes(b"previous result")

    def broken_save(*args, **kwargs):
        Path(args[1]).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", broken_save)
    result = run_cli(["fold", source, "-o", target], exit_code=2)
    assert "cannot write" in result.stderr
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.onnx", "out.onnx"]


@pytest.mark.parametrize("args", [["--keep", "("], ["--input-shape", "x:1xA"]])
def test_bad_options_are_usage_errors(tmp_path, run_cli, args) -> None:
    source = save(fm.conv_bn(), tmp_path, "in.onnx")
    result = run_cli(["fold", source, "-o", tmp_path / "out.onnx", *args], exit_code=2)
    assert not (tmp_path / "out.onnx").exists()
    assert "Error" in result.stderr or "error" in result.stderr


def test_unreadable_input_is_one_line_and_exit_2(tmp_path, run_cli) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf")
    result = run_cli(["fold", bad, "-o", tmp_path / "out.onnx"], exit_code=2)
    assert result.stderr.startswith("bnlint: error: ") and result.stderr.count("\n") == 1
