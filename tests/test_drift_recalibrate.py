"""``bnlint recalibrate``: layer by layer, only the statistics change, refusals with reasons."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import helper, numpy_helper

from tests import drift_cases as dc


def _bn_inputs(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every BN's input tensor, from ONNX Runtime with optimizations off."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = [n.input[0] for n in probe.graph.node if n.op_type == "BatchNormalization"]
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(probe.SerializeToString(), options)
    values = session.run(names, {"x": x})
    return dict(zip(names, values, strict=True))


def _stats(model: onnx.ModelProto) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {
        n.name: (inits[n.input[3]], inits[n.input[4]])
        for n in model.graph.node
        if n.op_type == "BatchNormalization"
    }


@pytest.fixture
def scaled(tmp_path: Path) -> tuple[Path, Path, np.ndarray]:
    model = tmp_path / "linear.onnx"
    onnx.save(dc.LinearNet(0).model(), str(model))
    x = dc.samples(150, 1) * 255
    samples = tmp_path / "served.npz"
    np.savez(samples, x=x)
    return model, samples, x


def test_each_layer_is_estimated_on_recalibrated_inputs(run_cli, scaled, tmp_path: Path) -> None:
    model, samples, x = scaled
    out = tmp_path / "out.onnx"
    result = run_cli(["recalibrate", model, "--sample-data", samples, "-o", out])
    assert "MISMATCH" in result.stdout and "wrote" in result.stderr
    written = onnx.load(str(out))
    new = _stats(written)
    seen = _bn_inputs(written, x)  # with the new statistics in place
    for node in written.graph.node:
        if node.op_type != "BatchNormalization":
            continue
        values = seen[node.input[0]].astype(np.float64)
        pooled = values.transpose(1, 0, 2, 3).reshape(values.shape[1], -1)
        mean, var = new[node.name]
        np.testing.assert_allclose(mean, pooled.mean(axis=1), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(var, pooled.var(axis=1, ddof=1), rtol=1e-4)
    # a single pass (every BN measured under the old statistics) would give bn2 the
    # statistics of inputs normalised with bn1's stale ones: far from what it now sees
    stale_inputs = _bn_inputs(onnx.load(str(model)), x)["c2"].astype(np.float64)
    assert not np.allclose(new["bn2"][1], stale_inputs.var(axis=(0, 2, 3)), rtol=0.1)


def test_only_the_statistics_bytes_change(run_cli, scaled, tmp_path: Path) -> None:
    model, samples, _ = scaled
    out = tmp_path / "out.onnx"
    run_cli(["recalibrate", model, "--sample-data", samples, "-o", out])
    before, after = model.read_bytes(), out.read_bytes()
    assert len(before) == len(after)
    differing = {i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b}
    stats_bytes = set()
    for tensor in ("m1", "v1", "m2", "v2"):
        raw = numpy_helper.from_array(
            numpy_helper.to_array(
                next(t for t in onnx.load(str(model)).graph.initializer if t.name == tensor)
            ),
            tensor,
        ).raw_data
        start = before.index(raw)
        stats_bytes |= set(range(start, start + len(raw)))
    assert differing and differing <= stats_bytes
    original = onnx.load(str(model))
    rewritten = onnx.load(str(out))
    assert [n.SerializeToString() for n in original.graph.node] == [
        n.SerializeToString() for n in rewritten.graph.node
    ]


def test_a_recalibrated_model_has_no_drift_on_held_out_samples(run_cli, scaled, tmp_path) -> None:
    model, samples, _ = scaled
    out = tmp_path / "out.onnx"
    run_cli(["recalibrate", model, "--sample-data", samples, "-o", out, "--format", "json"])
    held_out = tmp_path / "held.npy"
    np.save(held_out, dc.samples(300, 99) * 255)
    run_cli([model, "--sample-data", held_out, "--select", "BN021"], exit_code=1)
    result = run_cli([out, "--sample-data", held_out, "--select", "BN021", "--format", "json"])
    assert result.json["summary"]["findings"] == 0


def test_json_lists_drift_before_and_after(run_cli, scaled, tmp_path: Path) -> None:
    model, samples, _ = scaled
    out = tmp_path / "out.onnx"
    result = run_cli(
        ["recalibrate", model, "--sample-data", samples, "-o", out, "--format", "json"]
    )
    assert result.json["models"][0]["findings"][0]["code"] == "BN021"
    data = json.loads(result.stdout)["recalibration"]
    assert [layer["bn"] for layer in data["layers"]] == ["bn1", "bn2"]
    assert [layer["depth"] for layer in data["layers"]] == [1, 2]
    assert all(layer["before"]["mismatch"] for layer in data["layers"])
    assert not any(layer["after"]["mismatch"] for layer in data["layers"])
    assert data["passes"] == 3  # before (= depth 1), depth 2, after


def _shared_statistics_model() -> onnx.ModelProto:
    """Two BNs reading the same running-mean tensor (and one stat from a Constant node)."""
    model = dc.LinearNet(0).model()
    graph = model.graph
    graph.node[3].input[3] = "m1_for_bn2"
    graph.node.insert(
        0,
        helper.make_node(
            "Constant",
            [],
            ["m1_for_bn2"],
            value=numpy_helper.from_array(np.zeros(5, np.float32), "c"),
        ),
    )
    return model


def test_shared_or_constant_statistics_become_new_initializers(run_cli, tmp_path: Path) -> None:
    model = tmp_path / "shared.onnx"
    onnx.save(_shared_statistics_model(), str(model))
    samples = tmp_path / "s.npy"
    np.save(samples, dc.samples(100, 3))
    out = tmp_path / "out.onnx"
    run_cli(["recalibrate", model, "--sample-data", samples, "-o", out])
    original, written = onnx.load(str(model)), onnx.load(str(out))
    assert written.graph.node[4].input[3] == "m1_for_bn2_recalibrated"
    kept = {t.name: t.SerializeToString() for t in original.graph.initializer}
    for tensor in written.graph.initializer:
        if tensor.name in kept and tensor.name not in ("m1", "v1", "v2"):
            assert tensor.SerializeToString() == kept[tensor.name], tensor.name
    onnx.checker.check_model(written)
    run_cli([out, "--sample-data", samples, "--select", "BN021"])


def test_external_data_is_written_beside_the_output(run_cli, tmp_path: Path) -> None:
    source = tmp_path / "in" / "ext.onnx"
    source.parent.mkdir()
    onnx.save(
        dc.LinearNet(0).model(),
        str(source),
        save_as_external_data=True,
        location="ext.onnx.data",
        size_threshold=0,
    )
    data_before = (source.parent / "ext.onnx.data").read_bytes()
    samples = tmp_path / "s.npy"
    np.save(samples, dc.samples(100, 3) * 2)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    run_cli(["recalibrate", source, "--sample-data", samples, "-o", out_dir / "r.onnx"])
    assert (source.parent / "ext.onnx.data").read_bytes() == data_before
    source.parent.rename(tmp_path / "moved")  # the output must not depend on the input's files
    run_cli([out_dir / "r.onnx", "--sample-data", samples, "--select", "BN021"])


def _training_mode_model() -> onnx.ModelProto:
    model = dc.LinearNet(0).model()
    bn = model.graph.node[1]
    bn.attribute.append(helper.make_attribute("training_mode", 1))
    return model


def _stats_as_inputs_model() -> onnx.ModelProto:
    model = dc.LinearNet(0).model()
    model.graph.input.append(helper.make_tensor_value_info("v2", onnx.TensorProto.FLOAT, [5]))
    return model


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (_training_mode_model, "is in training mode"),
        (_stats_as_inputs_model, "is a graph input ('v2')"),
    ],
)
def test_refusals_say_why_and_write_nothing(run_cli, tmp_path: Path, build, reason) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(build(), str(model))
    samples = tmp_path / "s.npy"
    np.save(samples, dc.samples(20, 0))
    out = tmp_path / "out.onnx"
    result = run_cli(["recalibrate", model, "--sample-data", samples, "-o", out], exit_code=2)
    assert reason in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_outputs_never_replace_inputs(run_cli, scaled, tmp_path: Path) -> None:
    model, samples, _ = scaled
    before = model.read_bytes(), samples.read_bytes()
    link = tmp_path / "link.onnx"
    link.symlink_to(model)
    for target in (model, samples, link):
        result = run_cli(
            ["recalibrate", model, "--sample-data", samples, "-o", target], exit_code=2
        )
        assert "refusing to overwrite" in result.stderr
    result = run_cli(
        ["recalibrate", model, "--sample-data", samples, "-o", tmp_path / "no" / "x.onnx"],
        exit_code=2,
    )
    assert "does not exist" in result.stderr
    assert (model.read_bytes(), samples.read_bytes()) == before


def test_bad_samples_and_unrunnable_models_exit_2(run_cli, scaled, tmp_path: Path) -> None:
    model, _, _ = scaled
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.full((3, 3, 8, 8), np.nan, np.float32))
    out = tmp_path / "out.onnx"
    result = run_cli(["recalibrate", model, "--sample-data", bad, "-o", out], exit_code=2)
    assert "contains NaN" in result.stderr and str(bad) in result.stderr
    assert not out.exists()


def test_float16_models_are_checked_and_statistics_that_overflow_are_refused(
    run_cli, tmp_path: Path
) -> None:
    model = tmp_path / "half.onnx"
    onnx.save(dc.LinearNet(0).model(dtype=np.float16), str(model))
    fine, scaled = tmp_path / "fine.npy", tmp_path / "scaled.npy"
    np.save(fine, dc.samples(64, 1).astype(np.float16))
    np.save(scaled, (dc.samples(64, 1) * 255).astype(np.float16))
    run_cli([model, "--sample-data", fine, "--select", "BN021"])
    run_cli([model, "--sample-data", scaled, "--select", "BN021"], exit_code=1)
    out = tmp_path / "out.onnx"
    result = run_cli(["recalibrate", model, "--sample-data", scaled, "-o", out], exit_code=2)
    assert "float16 cannot hold" in result.stderr and not out.exists()
    run_cli(["recalibrate", model, "--sample-data", fine, "-o", out])
    assert numpy_helper.to_array(onnx.load(str(out)).graph.initializer[4]).dtype == np.float16
