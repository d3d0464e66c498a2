"""Small ONNX files that made third-party or own code loop or allocate without bound.

Each is a Conv -> BatchNormalization(training_mode=1) model (BN003, and rules that ask for
shapes) plus one pathological construct:

- :func:`einsum` — an Einsum equation with two ``...`` in one term (onnx's shape inference
  loops forever, in C++, where SIGINT is never seen);
- :func:`value_sized_concat` — ``ConstantOfShape([L]) -> Concat -> Reshape``: onnx's data
  propagation builds ``L`` protobuf messages (905 bytes asked for 3.46 GB);
- :func:`repeated_concat` — a Concat listing one 512 KiB constant 4,000 times: bnlint's
  own constant folding would build a 2 GB array before checking its size;
- :func:`doubling_functions` — model-local functions, each calling the previous twice, 40
  levels deep (4 KB that inline into 2**40 nodes);
- :func:`huge_name_scopes` — ``pkg.torch.onnx.name_scopes`` metadata of 12 MB on three
  nodes (``ast.literal_eval`` builds gigabytes from it), ending with the real module path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]


def _bn_block(
    extra_nodes: list, extra_inits: list | None = None, extra_outputs=(), extra_inputs=()
) -> onnx.GraphProto:
    inits = [
        numpy_helper.from_array(np.full(shape, value, np.float32), name)
        for name, shape, value in (
            ("w", (4, 2, 1, 1), 0.5),
            ("s", (4,), 1.0),
            ("b", (4,), 0.0),
            ("m", (4,), 0.1),
            ("v", (4,), 2.0),
        )
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
        helper.make_node(
            "BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], name="bn", training_mode=1
        ),
        *extra_nodes,
    ]
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
        for name in ("y", *extra_outputs)
    ]
    return helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4]), *extra_inputs],
        outputs,
        inits + list(extra_inits or []),
    )


def _save(graph: onnx.GraphProto, path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    model = helper.make_model(graph, opset_imports=kwargs.pop("opsets", OPSET), **kwargs)
    path.write_bytes(model.SerializeToString())
    return path


def einsum(path: Path) -> Path:
    operand = helper.make_tensor_value_info("t", TensorProto.FLOAT, [2, 3, 4])
    nodes = [helper.make_node("Einsum", ["t", "t"], ["e"], equation="...i...,...i->...")]
    return _save(_bn_block(nodes, extra_outputs=["e"], extra_inputs=[operand]), path)


def value_sized_concat(path: Path, length: int = 10**9) -> Path:
    shape = numpy_helper.from_array(np.array([length], np.int64), "shape")
    nodes = [
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["ones"],
            value=helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        ),
        helper.make_node("Concat", ["ones", "ones"], ["target"], axis=0),
        helper.make_node("Reshape", ["y", "target"], ["r"]),
    ]
    return _save(_bn_block(nodes, [shape], extra_outputs=["r"]), path)


def repeated_concat(path: Path, copies: int = 4000) -> Path:
    block = numpy_helper.from_array(np.ones(128 * 1024, np.float32), "block")
    nodes = [
        helper.make_node("Concat", ["block"] * copies, ["big"], axis=0),
        helper.make_node("Add", ["y", "big"], ["sum"]),
    ]
    return _save(_bn_block(nodes, [block], extra_outputs=["sum"]), path)


def doubling_functions(path: Path, levels: int = 40) -> Path:
    functions = []
    for level in range(levels):
        if level == 0:
            body = [helper.make_node("Relu", ["a"], ["b"])]
        else:
            call = f"f{level - 1}"
            body = [
                helper.make_node(call, ["a"], ["t"], domain="local"),
                helper.make_node(call, ["t"], ["b"], domain="local"),
            ]
        functions.append(helper.make_function("local", f"f{level}", ["a"], ["b"], body, OPSET))
    nodes = [helper.make_node(f"f{levels - 1}", ["y"], ["z"], domain="local")]
    return _save(
        _bn_block(nodes, extra_outputs=["z"]),
        path,
        opsets=[*OPSET, helper.make_opsetid("local", 1)],
        functions=functions,
    )


def huge_name_scopes(path: Path, megabytes: int = 12) -> Path:
    graph = _bn_block([])
    filler = ", ".join(["''"] * (megabytes * 1024 * 1024 // 4))
    for node, scope in zip(graph.node, ("features.conv", "features.bn"), strict=True):
        value = f"[{filler}, '{scope}', '{node.name}']"
        node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=value)
    return _save(graph, path)
