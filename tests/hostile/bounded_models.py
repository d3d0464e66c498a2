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
from onnx import TensorProto, helper

from tests.zoo.onnx_builder import GraphBuilder

OPSET = [helper.make_opsetid("", 17)]


def _bn_block() -> tuple[GraphBuilder, str]:
    """A Conv -> BatchNormalization(training_mode=1) builder and the BN's output."""
    g = GraphBuilder(opset=17)
    x = g.input("x", [1, 2, 4, 4])
    return g, g.bn(g.conv(x, 4, k=1, name="conv", bias=False), name="bn", training=True)


def _save(g: GraphBuilder, outputs: list[str], path: Path, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    model = helper.make_model(g.graph(outputs), opset_imports=kwargs.pop("opsets", OPSET), **kwargs)
    path.write_bytes(model.SerializeToString())
    return path


def einsum(path: Path) -> Path:
    g, y = _bn_block()
    operand = g.input("t", [2, 3, 4])
    (e,) = g.node("Einsum", [operand, operand], name="einsum", equation="...i...,...i->...")
    return _save(g, [y, e], path)


def value_sized_concat(path: Path, length: int = 10**9) -> Path:
    g, y = _bn_block()
    shape = g.param("shape", np.array([length], np.int64))
    one = helper.make_tensor("one", TensorProto.INT64, [1], [1])
    (ones,) = g.node("ConstantOfShape", [shape], name="ones", value=one)
    (target,) = g.node("Concat", [ones, ones], name="target", axis=0)
    (reshaped,) = g.node("Reshape", [y, target], name="reshape")
    return _save(g, [y, reshaped], path)


def repeated_concat(path: Path, copies: int = 4000) -> Path:
    g, y = _bn_block()
    block = g.param("block", np.ones(128 * 1024, np.float32))
    (big,) = g.node("Concat", [block] * copies, name="big", axis=0)
    (total,) = g.node("Add", [y, big], name="sum")
    return _save(g, [y, total], path)


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
    g, y = _bn_block()
    (z,) = g.node(f"f{levels - 1}", [y], name="call", domain="local")
    opsets = [*OPSET, helper.make_opsetid("local", 1)]
    return _save(g, [y, z], path, opsets=opsets, functions=functions)


def huge_name_scopes(path: Path, megabytes: int = 12) -> Path:
    g, y = _bn_block()
    filler = ", ".join(["''"] * (megabytes * 1024 * 1024 // 4))
    for node, scope in zip(g.nodes, ("features.conv", "features.bn"), strict=True):
        value = f"[{filler}, '{scope}', '{node.name}']"
        node.metadata_props.add(key="pkg.torch.onnx.name_scopes", value=value)
    return _save(g, [y], path)
