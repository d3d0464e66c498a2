"""Hostile graphs: malformed structure, absurd sizes and names, one ONNX file per class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from tests.hostile.case import HostileCase, linted, refused
from tests.zoo.onnx_builder import GraphBuilder


def _save(model: onnx.ModelProto, folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(model.SerializeToString())
    return path


def _bn_model(
    params: list[np.ndarray] | None = None, c: int = 4, name: str = "bn"
) -> onnx.ModelProto:
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, c, 8, 8])
    names = None
    if params is not None:
        names = [g.param(f"{name}.{i}", value) for i, value in enumerate(params)]
    y = g.relu(g.bn(g.conv(x, c, name="conv", bias=False), name=name, c=c, params=names))
    return g.model([y], infer=False)


# -- the graph ----------------------------------------------------------------------------
def huge_declared_dims(folder: Path) -> HostileCase:
    """Initializers declaring 2**60 elements over 16 bytes: reported, never allocated."""
    model = _bn_model()
    for tensor in model.graph.initializer:
        if tensor.name.endswith(("running_var", "conv.weight")):
            del tensor.dims[:]
            tensor.dims.extend([2**40, 2**20])
    return linted(_save(model, folder, "huge_dims.onnx"), "BN010")


def cycle(folder: Path) -> HostileCase:
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 4, 8, 8])
    (mixed,) = g.node("Add", [x, "looped"], name="mix")
    g.channels[mixed] = 4
    bn = g.bn(g.conv(mixed, 4, name="conv"), name="bn")
    g.node("Relu", [bn], name="back")
    g.nodes[-1].output[0] = "looped"
    model = g.model(["looped"], infer=False)
    return linted(_save(model, folder, "cycle.onnx"), "BN901")


def dangling(folder: Path) -> HostileCase:
    g = GraphBuilder(opset=15)
    g.input("x", [1, 4, 8, 8])
    y = g.relu(g.bn(g.conv("never_produced", 4, cin=4, name="conv"), name="bn", c=4))
    return linted(_save(g.model([y], infer=False), folder, "dangling.onnx"), "BN901")


def wrong_bn_input_count(folder: Path) -> HostileCase:
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 4, 8, 8])
    scale, bias, _, _ = g.bn_params("bn", 4)
    (y,) = g.node("BatchNormalization", [x, scale, bias], name="bn")
    return linted(_save(g.model([y], infer=False), folder, "bn_inputs.onnx"), "BN901")


def mismatched_shapes(folder: Path) -> HostileCase:
    params = [np.ones(7), np.zeros(7), np.zeros(7), np.ones(7)]
    return linted(_save(_bn_model(params), folder, "shapes.onnx"), "BN010")


def bad_statistics(folder: Path) -> HostileCase:
    params = [
        np.array([1.0, np.inf, 1.0, 1.0]),
        np.zeros(4),
        np.array([np.nan, 0.0, 0.0, 0.0]),
        np.array([-1.0, 1.0, 1.0, 1.0]),
    ]
    return linted(_save(_bn_model(params), folder, "stats.onnx"), "BN006")


def _nested_if(depth: int) -> onnx.ModelProto:
    value = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    body = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "leaf", [], [value])
    leaf = body
    for level in range(depth):
        node = helper.make_node(
            "If", ["cond"], ["y"], then_branch=body, else_branch=leaf, name=f"if{level}"
        )
        body = helper.make_graph([node], f"level{level}", [], [value])
    inputs = [
        helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
    ]
    graph = helper.make_graph(list(body.node), "top", inputs, [value])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])


def nested_subgraphs(folder: Path) -> HostileCase:
    """Nesting deeper than ``max-subgraph-depth`` (from a config file beside the model)."""
    path = _save(_nested_if(12), folder, "nested.onnx")
    (folder / "bnlint.toml").write_text("max-subgraph-depth = 8\n")
    return refused(path, "subgraph nesting deeper than 8 levels")


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def deep_protobuf(folder: Path) -> HostileCase:
    """5,000 levels of If bodies, encoded by hand (onnx.helper refuses to build them)."""
    graph = b""
    for _ in range(5000):
        attribute = _field(1, b"then_branch") + _field(6, graph) + _varint(20 << 3) + b"\x05"
        node = _field(4, b"If") + _field(5, attribute)
        graph = _field(1, node)
    opset = _varint(2 << 3) + _varint(15)
    model = _varint(1 << 3) + _varint(8) + _field(8, opset) + _field(7, graph)
    (path := folder / "deep.onnx").write_bytes(model)
    return refused(path, "not a valid ONNX model")


def over_node_limit(folder: Path) -> HostileCase:
    inputs = [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1])]
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(500)]
    outputs = [helper.make_tensor_value_info("t500", TensorProto.FLOAT, [1])]
    graph = helper.make_graph(nodes, "chain", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    (folder / "bnlint.toml").write_text("max-nodes = 100\n")
    return refused(_save(model, folder, "chain.onnx"), "500 nodes exceed the limit of 100")


def big_graph(folder: Path) -> HostileCase:
    """50,000 nodes: conv-BN-ReLU blocks, then a long element-wise chain, linted under the
    time and memory guard (few findings, so the reports stay small)."""
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 4, 4, 4])
    for _ in range(3):
        x = g.relu(g.bn(g.conv(x, 4, k=1, bias=False)))
    step = g.param("step", np.full((1, 4, 1, 1), 0.5))
    while len(g.nodes) < 50_000:
        (x,) = g.node("Add", [x, step])
        (x,) = g.node("Relu", [x])
    model = helper.make_model(g.graph([x]), opset_imports=[helper.make_opsetid("", 15)])
    # healthy: no finding (BN011, one note per foldable BN, is opt-in)
    return linted(_save(model, folder, "big.onnx"), exit_code=0, expected_seconds=6)


HOSTILE_NAME = "<script>alert(1)</script>{{ 7*7 }}{% raw %}|pipe|\n\x1b[31mred\x1b[0m\r\u202eevil"


def hostile_names(folder: Path) -> HostileCase:
    """Node, tensor and module names built to break terminals, Markdown, HTML and Jinja."""
    g = GraphBuilder(opset=14)
    x = g.input("x", [2, 3, 8, 8])
    conv = g.conv(x, 4, name=f"conv{HOSTILE_NAME}", bias=False)
    y = g.bn(conv, name=f"bn{HOSTILE_NAME}", training=True)
    model = g.model([y], infer=False)
    node = model.graph.node[-1]
    scopes = repr(["", f"bn{HOSTILE_NAME}"])
    node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=scopes)
    return linted(_save(model, folder, "names.onnx"), "BN003")
