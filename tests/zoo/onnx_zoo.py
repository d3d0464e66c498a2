"""The shared zoo: small ONNX models covering what real files contain.

Every rule runs over every zoo model (tests/test_zoo.py) with snapshots, so a rule that only
works on its own three-node fixture shows up. Each entry writes its model into a folder and
returns the path (external data needs a folder).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.zoo.onnx_builder import GraphBuilder, type_outputs_from_value_info


def _save(model: onnx.ModelProto, folder: Path, name: str, **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.onnx"
    onnx.save_model(model, str(path), **kwargs)
    return path


def _resnet_like(g: GraphBuilder, x: str) -> str:
    stem = g.relu(g.bn(g.conv(x, 8, name="stem.conv", bias=False), name="stem.bn"))
    h = g.relu(g.bn(g.conv(stem, 8, name="block.conv1", bias=False), name="block.bn1"))
    h = g.bn(g.conv(h, 8, name="block.conv2", bias=False), name="block.bn2")
    out = g.relu(g.add(h, stem, name="block.add"))
    pooled = g.flatten(g.global_pool(out))
    return g.gemm(pooled, 10, name="head.fc")


def resnet_opset15(folder: Path) -> Path:
    g = GraphBuilder(opset=15)
    return _save(g.model([_resnet_like(g, g.input("x", [1, 3, 16, 16]))]), folder, "resnet_opset15")


def resnet_newest_opset(folder: Path) -> Path:
    g = GraphBuilder(opset=onnx.defs.onnx_opset_version())
    model = g.model([_resnet_like(g, g.input("x", [1, 3, 16, 16]))])
    return _save(model, folder, "resnet_newest_opset")


def symbolic_batch(folder: Path) -> Path:
    g = GraphBuilder(opset=17)
    return _save(g.model([_resnet_like(g, g.input("x", ["batch", 3, 16, 16]))]), folder, "symbolic")


def opset7_ir3(folder: Path) -> Path:
    """Opset 7 with IR 3, where every initializer must also be a graph input."""
    g = GraphBuilder(opset=7)
    x = g.input("x", [1, 3, 8, 8])
    y = g.relu(g.bn(g.conv(x, 4, name="conv"), name="bn"))
    model = g.model([y], ir_version=3, infer=False)
    for tensor in model.graph.initializer:
        model.graph.input.append(
            helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
        )
    model = onnx.shape_inference.infer_shapes(model)
    type_outputs_from_value_info(model.graph)
    return _save(model, folder, "opset7_ir3")


def opset9_training(folder: Path) -> Path:
    g = GraphBuilder(opset=9)
    x = g.input("x", [2, 3, 8, 8])
    y = g.relu(g.bn(g.conv(x, 4, name="conv"), name="bn", training=True))
    return _save(g.model([y]), folder, "opset9_training")


def opset14_training_mode(folder: Path) -> Path:
    g = GraphBuilder(opset=14)
    x = g.input("x", [2, 3, 8, 8])
    y = g.relu(g.bn(g.conv(x, 4, name="conv", bias=False), name="bn", training=True))
    return _save(g.model([y]), folder, "opset14_training_mode")


def constant_node_params(folder: Path) -> Path:
    """BN parameters from Constant nodes (and one routed through Identity), not initializers."""
    g = GraphBuilder(opset=13)
    x = g.input("x", [1, 3, 8, 8])
    conv = g.conv(x, 4, name="conv", bias=False)
    rng = np.random.default_rng(1)
    values = [
        rng.uniform(0.5, 1.5, 4),
        rng.normal(0, 0.1, 4),
        rng.normal(0, 0.3, 4),
        rng.uniform(0.5, 2, 4),
    ]
    names = []
    for index, value in enumerate(values):
        name = f"const{index}"
        g.nodes.append(
            helper.make_node(
                "Constant",
                [],
                [name],
                name=f"Constant_{index}",
                value=onnx.numpy_helper.from_array(value.astype(np.float32)),
            )
        )
        names.append(name)
    (routed,) = g.node("Identity", [names[3]], name="var_identity")
    names[3] = routed
    y = g.relu(g.bn(conv, name="bn", params=names))
    return _save(g.model([y]), folder, "constant_node_params")


def dynamo_zero_bias(folder: Path) -> Path:
    """torch's dynamo exporter builds a bias-free Conv's zero bias at run time."""
    g = GraphBuilder(opset=18)
    x = g.input("x", [1, 3, 8, 8])
    weight = g.param("conv.weight", g.rng.normal(0, 0.3, (4, 3, 3, 3)))
    (shape,) = g.node("Shape", [weight], name="node_Shape_0", start=0, end=1)
    one = g.param("val_1", np.array([1], dtype=np.int64))
    (expanded,) = g.node("Expand", [shape, one], name="node_Expand_2")
    zero = g.param("val_3", np.array(0.0, dtype=np.float32))
    (cast,) = g.node("CastLike", [zero, x], name="node_CastLike_4")
    (bias,) = g.node("Expand", [cast, expanded], name="node_Expand_5")
    (conv,) = g.node("Conv", [x, weight, bias], name="node_conv2d", pads=[1, 1, 1, 1])
    g.channels[conv] = 4
    y = g.relu(g.bn(conv, name="node_batch_norm"))
    return _save(g.model([y]), folder, "dynamo_zero_bias")


FEATURE_MAP = [1, 4, 8, 8]


def _body_graph(prefix: str, rng_seed: int, c: int = 4) -> onnx.GraphProto:
    g = GraphBuilder(opset=15, seed=rng_seed)
    g.channels["x"] = c
    y = g.relu(g.bn(g.conv("x", c, name=f"{prefix}.conv"), name=f"{prefix}.bn"))
    (out,) = g.node("Identity", [y], name=f"{prefix}.out")
    return helper.make_graph(
        g.nodes,
        prefix,
        [],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)],
        g.initializers,
    )


def if_branches(folder: Path) -> Path:
    g = GraphBuilder(opset=15)
    g.input("x", [1, 4, 8, 8])
    cond = g.input("cond", [], elem_type=TensorProto.BOOL)
    (out,) = g.node(
        "If",
        [cond],
        name="branch",
        then_branch=_body_graph("then", 1),
        else_branch=_body_graph("else", 2),
    )
    return _save(g.model([out]), folder, "if_branches")


def loop_body(folder: Path) -> Path:
    g = GraphBuilder(opset=15)
    g.input("x", [1, 4, 8, 8])
    trip = g.param("trip", np.array(2, dtype=np.int64))
    body = GraphBuilder(opset=15, seed=3)
    body.channels["carried"] = 4
    y = body.relu(body.bn(body.conv("carried", 4, name="loop.conv"), name="loop.bn"))
    (cond_out,) = body.node("Identity", ["cond_in"], name="loop.cond")
    graph = helper.make_graph(
        body.nodes,
        "loop_body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("carried", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info(cond_out, TensorProto.BOOL, []),
            helper.make_tensor_value_info(y, TensorProto.FLOAT, None),
        ],
        body.initializers,
    )
    (out,) = g.node("Loop", [trip, "", "x"], name="loop", body=graph)
    return _save(g.model([out], output_shapes={out: FEATURE_MAP}), folder, "loop_body")


def scan_body(folder: Path) -> Path:
    g = GraphBuilder(opset=15)
    g.input("seq", [3, 2, 6])
    state = g.param("state0", np.zeros((2, 6)))
    body = GraphBuilder(opset=15, seed=4)
    body.channels["step"] = 6
    normed = body.bn("step", name="scan.bn", c=6)
    (summed,) = body.node("Add", ["acc", normed], name="scan.add")
    (emit,) = body.node("Identity", [summed], name="scan.emit")
    graph = helper.make_graph(
        body.nodes,
        "scan_body",
        [
            helper.make_tensor_value_info("acc", TensorProto.FLOAT, [2, 6]),
            helper.make_tensor_value_info("step", TensorProto.FLOAT, [2, 6]),
        ],
        [
            helper.make_tensor_value_info(summed, TensorProto.FLOAT, [2, 6]),
            helper.make_tensor_value_info(emit, TensorProto.FLOAT, [2, 6]),
        ],
        body.initializers,
    )
    final, scanned = g.node(
        "Scan", [state, "seq"], n_outputs=2, name="scan", body=graph, num_scan_inputs=1
    )
    return _save(g.model([final, scanned]), folder, "scan_body")


def external_data(folder: Path) -> Path:
    g = GraphBuilder(opset=17)
    model = g.model([_resnet_like(g, g.input("x", [1, 3, 16, 16]))])
    return _save(
        model,
        folder,
        "external_data",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="external_data.bin",
        size_threshold=0,
    )


def external_data_at(folder: Path, location: str) -> Path:
    """The external-data model with every tensor's location rewritten to ``location``."""
    path = external_data(folder)
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save(model, str(path))
    return path


def transformer_bn1d(folder: Path) -> Path:
    """Token projection, attention-free mixer, FFN with BatchNorm1d over the feature axis."""
    g = GraphBuilder(opset=17)
    x = g.input("tokens", [2, 16, 8])
    h = g.matmul(x, 32, name="proj", cin=8)
    (h_t,) = g.node("Transpose", [h], name="to_ncl", perm=[0, 2, 1])
    g.channels[h_t] = 32
    normed = g.bn(h_t, name="ffn.bn", c=32)
    (back,) = g.node("Transpose", [normed], name="to_nlc", perm=[0, 2, 1])
    act = g.unary("Gelu", back, name="ffn.act") if g.opset >= 20 else g.relu(back, "ffn.act")
    out = g.matmul(act, 8, name="ffn.out", cin=32)
    scale = g.param("ln.scale", np.ones(8))
    bias = g.param("ln.bias", np.zeros(8))
    (ln,) = g.node("LayerNormalization", [out, scale, bias], name="ln", axis=-1)
    return _save(g.model([ln]), folder, "transformer_bn1d")


def layernorm_mlp(folder: Path) -> Path:
    """A network normalized by design with LayerNorm (no BN at all)."""
    g = GraphBuilder(opset=17)
    x = g.input("x", [4, 16])
    h = g.gemm(x, 32, name="fc1")
    scale, bias = g.param("ln.scale", np.ones(32)), g.param("ln.bias", np.zeros(32))
    (ln,) = g.node("LayerNormalization", [h, scale, bias], name="ln", axis=-1)
    g.channels[ln] = 32
    return _save(g.model([g.gemm(g.relu(ln), 4, name="fc2")]), folder, "layernorm_mlp")


def se_block(folder: Path) -> Path:
    """Conv-BN-ReLU trunk with a squeeze-excitation branch whose 1x1 convs have no BN."""
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 3, 8, 8])
    trunk = g.relu(g.bn(g.conv(x, 8, name="conv", bias=False), name="bn"))
    squeezed = g.global_pool(trunk, "se.pool")
    excite = g.relu(g.conv(squeezed, 2, k=1, name="se.reduce"))
    gate = g.unary("Sigmoid", g.conv(excite, 8, k=1, name="se.expand"), "se.gate")
    (scaled,) = g.node("Mul", [trunk, gate], name="se.mul")
    return _save(g.model([scaled]), folder, "se_block")


def folded_by_exporter(folder: Path) -> Path:
    """What the default torch export produces: BN already folded, Conv -> Relu everywhere."""
    g = GraphBuilder(opset=18)
    x = g.input("x", [1, 3, 8, 8])
    y = g.relu(g.conv(g.relu(g.conv(x, 8, name="conv1")), 8, name="conv2"))
    return _save(g.model([y]), folder, "folded_by_exporter")


def conv_transpose_decoder(folder: Path) -> Path:
    g = GraphBuilder(opset=15)
    x = g.input("z", [1, 8, 4, 4])
    h = g.relu(g.bn(g.conv_transpose(x, 8, name="up1", bias=False), name="up1.bn"))
    h = g.relu(g.bn(g.conv_transpose(h, 4, groups=2, name="up2", bias=False), name="up2.bn"))
    return _save(g.model([h]), folder, "conv_transpose_decoder")


def mlp_gemm_bn(folder: Path) -> Path:
    g = GraphBuilder(opset=15)
    x = g.input("x", [4, 16])
    h = g.relu(g.bn(g.gemm(x, 32, name="fc1", bias=False), name="bn1"))
    return _save(g.model([g.gemm(h, 3, name="classifier")]), folder, "mlp_gemm_bn")


def untrained_stats(folder: Path) -> Path:
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 3, 8, 8])
    h = g.relu(g.bn(g.conv(x, 4, name="conv1", bias=False), name="bn1", stats="untrained"))
    h = g.relu(g.bn(g.conv(h, 4, name="conv2", bias=False), name="bn2", stats="untrained"))
    return _save(g.model([h]), folder, "untrained_stats")


def depthwise_block(folder: Path) -> Path:
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 8, 8, 8])
    h = g.relu(g.bn(g.conv(x, 16, k=1, name="expand", bias=False), name="expand.bn"))
    h = g.relu(g.bn(g.conv(h, 16, groups=16, name="dw", bias=False), name="dw.bn"))
    h = g.bn(g.conv(h, 8, k=1, name="project", bias=False), name="project.bn")
    return _save(g.model([g.add(h, x, name="residual")]), folder, "depthwise_block")


ZOO: dict[str, Callable[[Path], Path]] = {
    function.__name__: function
    for function in (
        resnet_opset15,
        resnet_newest_opset,
        symbolic_batch,
        opset7_ir3,
        opset9_training,
        opset14_training_mode,
        constant_node_params,
        dynamo_zero_bias,
        if_branches,
        loop_body,
        scan_body,
        external_data,
        transformer_bn1d,
        layernorm_mlp,
        se_block,
        folded_by_exporter,
        conv_transpose_decoder,
        mlp_gemm_bn,
        untrained_stats,
        depthwise_block,
    )
}
