"""Measuring BN inputs through ONNX Runtime: the numbers are the tensors' own statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bnlint.config import Settings
from bnlint.drift.collect import collector_for, measure
from bnlint.drift.samples import SampleFile
from bnlint.drift.sites import find_sites
from bnlint.loaders import load_model
from tests import drift_cases as dc


def _graph(tmp_path: Path, model: onnx.ModelProto, name: str = "m.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return load_model(str(path), Settings())


def _bn_inputs(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = [n.input[0] for n in probe.graph.node if n.op_type == "BatchNormalization"]
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    session = onnxruntime.InferenceSession(probe.SerializeToString())
    return dict(zip(names, session.run(names, {"x": x}), strict=True))


def _measure(graph, samples: Path, point: str):
    sites = find_sites(graph).analysed
    collector = collector_for(graph, sites, point=point)
    sample_file = SampleFile(samples)
    return sites, measure(collector, sample_file, sample_file.bind(collector.inputs), sites)


@pytest.mark.parametrize("point", ["centred", "input"])
def test_measured_statistics_are_the_bn_inputs_statistics(tmp_path: Path, point: str) -> None:
    model = dc.LinearNet(0).model()
    x = dc.samples(37, 2) * 3 + 1  # drifted, so BN outputs are far from standardized
    np.save(tmp_path / "s.npy", x)
    sites, found = _measure(_graph(tmp_path, model), tmp_path / "s.npy", point)
    direct = _bn_inputs(model, x)
    for site in sites:
        values = direct[site.node.inputs[0]].astype(np.float64)
        pooled = values.transpose(1, 0, 2, 3).reshape(values.shape[1], -1)
        stats = found[site.id]
        assert stats.samples == 37 and stats.positions == values.shape[2] * values.shape[3]
        np.testing.assert_allclose(stats.mean, pooled.mean(axis=1), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(stats.var, pooled.var(axis=1), rtol=1e-4)


def test_a_fixed_batch_model_pads_its_last_batch(tmp_path: Path) -> None:
    x = dc.samples(10, 3)
    np.save(tmp_path / "s.npy", x)
    _, free = _measure(
        _graph(tmp_path, dc.LinearNet(0).model(), "free.onnx"), tmp_path / "s.npy", "centred"
    )
    fixed_graph = _graph(tmp_path, dc.LinearNet(0).model(batch=4), "fixed.onnx")
    _, fixed = _measure(fixed_graph, tmp_path / "s.npy", "centred")
    for site_id, stats in free.items():
        assert fixed[site_id].samples == 10
        np.testing.assert_allclose(fixed[site_id].mean, stats.mean, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(fixed[site_id].var, stats.var, rtol=1e-5)


def test_a_channel_with_zero_gamma_is_measured(tmp_path: Path) -> None:
    """The statistics are the BN input's own: a gamma of zero (the output ignores the
    input) does not hide them."""
    model = dc.LinearNet(0).model()
    for tensor in model.graph.initializer:
        if tensor.name == "g1":
            gamma = numpy_helper.to_array(tensor).copy()
            gamma[2] = 0.0
            tensor.CopyFrom(numpy_helper.from_array(gamma, "g1"))
    x = dc.samples(40, 1)
    np.save(tmp_path / "s.npy", x)
    sites, found = _measure(_graph(tmp_path, model), tmp_path / "s.npy", "centred")
    values = _bn_inputs(model, x)["c1"].astype(np.float64).transpose(1, 0, 2, 3)
    np.testing.assert_allclose(
        found[sites[0].id].mean, values.reshape(6, -1).mean(axis=1), rtol=1e-5, atol=1e-6
    )


def test_statistics_far_from_zero_keep_their_precision(tmp_path: Path) -> None:
    """BN inputs around 3e4 with unit spread: a float32 mean square about zero would lose
    the variance entirely (3e4^2 * 2^-24 = 54); centred on the running mean it holds."""
    net = dc.LinearNet(0)
    net.b1 = net.b1 + 3e4
    net.m1 = net.m1 + 3e4  # the statistics stay exact for the shifted convolution
    model = net.model()
    x = dc.samples(50, 9)
    np.save(tmp_path / "s.npy", x)
    sites, found = _measure(_graph(tmp_path, model), tmp_path / "s.npy", "centred")
    direct = _bn_inputs(model, x)["c1"].astype(np.float64).transpose(1, 0, 2, 3)
    pooled = direct.reshape(6, -1)
    stats = found[sites[0].id]
    np.testing.assert_allclose(stats.mean, pooled.mean(axis=1), rtol=1e-7)
    np.testing.assert_allclose(stats.var, pooled.var(axis=1), rtol=1e-3)
    np.testing.assert_allclose(stats.var, net.v1, rtol=0.3)  # and it is the known variance


def _two_inputs() -> onnx.ModelProto:
    nodes = [
        helper.make_node("Add", ["a", "b"], ["s"]),
        helper.make_node("BatchNormalization", ["s", "g", "beta", "m", "v"], ["y"], name="bn"),
    ]
    inits = [
        numpy_helper.from_array(np.array(value, np.float32), name)
        for name, value in (("g", [1, 1]), ("beta", [0, 0]), ("m", [3, -1]), ("v", [2, 0.5]))
    ]
    graph = helper.make_graph(
        nodes,
        "two",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model


def test_several_inputs_are_fed_by_name(run_cli, tmp_path: Path) -> None:
    path = tmp_path / "two.onnx"
    onnx.save(_two_inputs(), str(path))
    rng = np.random.default_rng(0)
    a = rng.normal([1, -1], [1, 0.5], (500, 2)).astype(np.float32)
    b = rng.normal([2, 0], [1, 0.5], (500, 2)).astype(np.float32)  # a + b matches m, v
    np.savez(tmp_path / "ok.npz", b=b, a=a)
    run_cli([path, "--sample-data", tmp_path / "ok.npz", "--select", "BN021"])
    np.savez(tmp_path / "bad.npz", a=a, b=b + 5)
    result = run_cli(
        [path, "--sample-data", tmp_path / "bad.npz", "--select", "BN021", "--format", "json"],
        exit_code=1,
    )
    finding = result.json["models"][0]["findings"][0]
    assert (
        finding["code"] == "BN021" and finding["evidence"]["note"] == "it depends on several inputs"
    )
