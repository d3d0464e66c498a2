"""The ONNX front end: what ends up in the ModelGraph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from bnlint.config import Settings
from bnlint.loaders import load_model
from tests.zoo import onnx_zoo
from tests.zoo.onnx_builder import GraphBuilder


def load(path: Path, **settings):
    return load_model(str(path), Settings(**settings))


def only_bn(graph):
    (bn,) = graph.nodes_of("batch_norm")
    return bn


@pytest.mark.parametrize(
    ("builder", "training"),
    [
        (onnx_zoo.opset9_training, True),
        (onnx_zoo.opset14_training_mode, True),
        (onnx_zoo.opset7_ir3, False),
    ],
)
def test_training_mode_is_read_per_opset(builder, training: bool, tmp_path: Path) -> None:
    bn = only_bn(load(builder(tmp_path)))
    assert bn.attrs["training"] is training


def test_onnx_momentum_is_converted_to_the_new_statistic_weight(tmp_path: Path) -> None:
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 3, 4, 4])
    model = g.model([g.bn(g.conv(x, 2), momentum=0.9, eps=1e-3)])
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    bn = only_bn(load(path))
    assert bn.attrs["momentum"] == pytest.approx(0.1)
    assert bn.attrs["source_momentum"] == pytest.approx(0.9)
    assert bn.attrs["eps"] == pytest.approx(1e-3)


def test_defaults_are_filled_when_the_file_omits_them(tmp_path: Path) -> None:
    bn = only_bn(load(onnx_zoo.opset14_training_mode(tmp_path)))
    assert bn.attrs["eps"] == pytest.approx(1e-5)
    assert bn.attrs["momentum"] == pytest.approx(0.1)
    assert bn.attrs["eps_explicit"] is False


def test_constant_nodes_become_parameters(tmp_path: Path) -> None:
    graph = load(onnx_zoo.constant_node_params(tmp_path))
    bn = only_bn(graph)
    assert all(graph.is_constant(bn.input(role)) for role in ("scale", "bias", "mean", "var"))
    assert not graph.nodes_of("identity"), "the Identity feeding a parameter is evaluated away"
    assert graph.param(bn.input("var")).shape == (4,)


def test_dynamo_zero_bias_plumbing_is_evaluated(tmp_path: Path) -> None:
    graph = load(onnx_zoo.dynamo_zero_bias(tmp_path))
    (conv,) = graph.nodes_of("conv")
    bias = graph.param(conv.input("bias"))
    assert bias is not None and bias.shape == (4,) and not bias.any()
    assert {node.source_op for node in graph.nodes} == {"Conv", "BatchNormalization", "Relu"}


@pytest.mark.parametrize("builder", [onnx_zoo.if_branches, onnx_zoo.loop_body, onnx_zoo.scan_body])
def test_subgraph_bodies_are_flattened_with_their_path(builder, tmp_path: Path) -> None:
    graph = load(builder(tmp_path))
    bns = graph.nodes_of("batch_norm")
    assert bns and all(bn.subgraph for bn in bns)
    for bn in bns:
        assert all(graph.is_constant(bn.input(r)) for r in ("scale", "bias", "mean", "var"))


def test_if_branch_nodes_are_connected_to_their_producers(tmp_path: Path) -> None:
    graph = load(onnx_zoo.if_branches(tmp_path))
    for bn in graph.nodes_of("batch_norm"):
        producer = graph.producer(bn.inputs[0])
        assert producer is not None and producer.op == "conv"
        assert producer.subgraph == bn.subgraph
    # The body reads "x" from the enclosing graph.
    convs = graph.nodes_of("conv")
    assert all(conv.inputs[0] == "x" for conv in convs)


def test_symbolic_batch_stays_symbolic_and_input_shape_overrides(tmp_path: Path) -> None:
    path = onnx_zoo.symbolic_batch(tmp_path)
    graph = load(path)
    assert graph.shape("x")[0] == "batch"
    assert "x" not in graph.facts.batch_sizes
    graph = load(path, input_shapes={"x": (8, 3, 16, 16)})
    assert graph.facts.batch_sizes["x"].value == 8
    assert graph.facts.batch_sizes["x"].source == "--input-shape"
    bn = graph.nodes_of("batch_norm")[0]
    assert graph.shape(bn.inputs[0]) == (8, 8, 16, 16)


def test_external_data_is_read_lazily(tmp_path: Path) -> None:
    graph = load(onnx_zoo.external_data(tmp_path))
    assert graph.params.loaded_names() == [], "nothing is read until a rule asks"
    bn = graph.nodes_of("batch_norm")[0]
    var = graph.param(bn.input("var"))
    assert var.shape == (8,) and (var > 0).all()
    assert graph.params.loaded_names() == [bn.input("var")]


def test_initializers_listed_as_inputs_before_ir4_are_constants(tmp_path: Path) -> None:
    """IR < 4 required every initializer in graph.input: runtimes treat them as constants
    (ONNX Runtime folds them), so a BN reading them folds (issue 13, item 4)."""
    graph = load(onnx_zoo.opset7_ir3(tmp_path))
    bn = only_bn(graph)
    assert bn.input("scale") in graph.params
    assert graph.is_constant(bn.input("scale"))
    assert graph.tensors[bn.input("scale")].listed_as_input
    assert graph.graph_inputs == ["x"]


def test_input_declared_for_typed_copy_is_not_a_graph_input(tmp_path: Path) -> None:
    graph = load(onnx_zoo.resnet_opset15(tmp_path))
    assert graph.graph_inputs == ["x"]
    assert all(graph.is_constant(name) for name in graph.params.names())


def test_module_path_and_source_line_from_dynamo_metadata(tmp_path: Path) -> None:
    g = GraphBuilder(opset=18)
    x = g.input("x", [1, 3, 4, 4])
    model = g.model([g.bn(g.conv(x, 2), name="node_bn")])
    node = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    onnx.helper.set_metadata_props(
        node,
        {
            "pkg.torch.onnx.name_scopes": "['', 'layer2', 'layer2.0', 'layer2.0.bn1', '_native_bn_3']",
            "pkg.torch.onnx.stack_trace": 'File "/src/net.py", line 42, in forward\n    x = self.bn1(x)',
            "namespace": ": Net/layer2.0.bn1: BatchNorm2d/_native_batch_norm_legit_functional: aten",
        },
    )
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    bn = only_bn(load(path))
    assert bn.scope == "layer2.0.bn1"
    assert (bn.location.source_file, bn.location.source_line) == ("/src/net.py", 42)
    assert bn.attrs["exported_in_training"] is True


def test_legacy_exporter_names_give_module_paths(tmp_path: Path) -> None:
    g = GraphBuilder(opset=17)
    x = g.input("x", [1, 3, 4, 4])
    model = g.model(
        [g.bn(g.conv(x, 2), name="/layer2/layer2.0/downsample/downsample.1/BatchNormalization")]
    )
    model.producer_name = "pytorch"
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    assert only_bn(load(path)).scope == "layer2.0.downsample.1"


def test_bfloat16_parameters_are_decoded(tmp_path: Path) -> None:
    g = GraphBuilder(opset=17)
    x = g.input("x", [1, 2, 4, 4])
    model = g.model([g.bn(x, c=2, name="bn")], infer=False)
    var = next(t for t in model.graph.initializer if t.name.endswith("running_var"))
    values = onnx.numpy_helper.to_array(var).astype(np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)
    var.CopyFrom(
        onnx.helper.make_tensor(var.name, onnx.TensorProto.BFLOAT16, [2], bits.tobytes(), raw=True)
    )
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    graph = load(path)
    decoded = graph.param(only_bn(graph).input("var"))
    assert decoded.dtype == np.float32
    np.testing.assert_allclose(decoded, values, rtol=1e-2)


def test_tensor_holding_fewer_bytes_than_declared_is_never_decoded(tmp_path: Path) -> None:
    from bnlint.api import lint
    from bnlint.graph import UnreadableParameter

    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 2, 4, 4])
    model = g.model([g.bn(x, c=2, name="bn")], infer=False)
    var = next(t for t in model.graph.initializer if t.name.endswith("running_var"))
    var.raw_data = var.raw_data[:4]  # declares 2 floats, holds one
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    graph = load(path)
    with pytest.raises(UnreadableParameter, match=r"declares \(2,\) \(8 bytes\) but holds 4 bytes"):
        graph.param("bn.running_var")
    codes = {f.code for f in lint(str(path)).findings}
    assert "BN902" not in codes, "an unreadable tensor is reported, never a crash"
