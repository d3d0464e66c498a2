"""Hypothesis generators of whole ONNX constructs that third-party inference mishandles.

Where :mod:`tests.fuzz_mutations` edits valid seeds, these build the constructs issue 12
found loops and explosions in, then vary them: Einsum equations near the operator's
grammar (:func:`einsum_model`), model-local functions calling each other with any fan-out,
depth and recursion (:func:`function_model`), and chains of shape operators whose
constants and declared dimensions are drawn from huge values
(:func:`shape_chain_model`). Every model ends in a Conv -> BatchNormalization, so rules
ask for shapes and onnx's shape inference (bounded: :mod:`bnlint.loaders.onnx_bounded`)
really runs on it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

OPSET = [helper.make_opsetid("", 17)]
SIZES = [0, 1, 2, 3, 4, 7, 64, 65, 4096, 10**6, 10**9, 2**31, 2**62, -1, -(2**40)]
# Einsum equations are drawn from these pieces: letters, the ellipsis and its fragments,
# separators, and the characters that break a naive parser.
EQUATION_PIECES = ["a", "b", "c", "i", "j", "Z", "...", ".", "..", ",", "->", "-", ">", " "]


def _bn_tail(source: str, channels: int = 2) -> tuple[list, list]:
    """Nodes and initializers of Conv(1x1) -> BatchNormalization on ``source`` (NCHW)."""
    inits = [
        numpy_helper.from_array(np.full(shape, value, np.float32), name)
        for name, shape, value in (
            ("fz.w", (channels, channels, 1, 1), 0.5),
            ("fz.s", (channels,), 1.0),
            ("fz.b", (channels,), 0.0),
            ("fz.m", (channels,), 0.1),
            ("fz.v", (channels,), 2.0),
        )
    ]
    nodes = [
        helper.make_node("Conv", [source, "fz.w"], ["fz.c"], name="fz.conv"),
        helper.make_node(
            "BatchNormalization", ["fz.c", "fz.s", "fz.b", "fz.m", "fz.v"], ["fz.y"], name="fz.bn"
        ),
    ]
    return nodes, inits


def _model(nodes, inits, inputs, outputs, **kwargs) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "fuzz", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=kwargs.pop("opsets", OPSET), **kwargs)


def _output(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def einsum_model(data: st.DataObject) -> onnx.ModelProto:
    """An Einsum on 1-3 inputs of drawn ranks, with an equation near the grammar."""
    pieces = st.lists(st.sampled_from(EQUATION_PIECES), min_size=0, max_size=10)
    equation = "".join(data.draw(pieces, label="equation"))
    ranks = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=3), label="ranks")
    inputs = [
        helper.make_tensor_value_info(f"e{i}", TensorProto.FLOAT, [2] * rank)
        for i, rank in enumerate(ranks)
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    tail, inits = _bn_tail("x")
    einsum = helper.make_node("Einsum", [v.name for v in inputs], ["e"], equation=equation)
    return _model([einsum, *tail], inits, [x, *inputs], [_output("e"), _output("fz.y")])


def function_model(data: st.DataObject) -> onnx.ModelProto:
    """1-8 model-local functions; each calls drawn others 0-4 times (cycles allowed)."""
    count = data.draw(st.integers(1, 8), label="functions")
    functions = []
    for index in range(count):
        callees = data.draw(
            st.lists(st.integers(0, count - 1), max_size=4), label=f"calls of f{index}"
        )
        body, current = [], "a"
        for position, callee in enumerate(callees):
            body.append(helper.make_node(f"f{callee}", [current], [f"t{position}"], domain="local"))
            current = f"t{position}"
        body.append(helper.make_node("Relu", [current], ["b"]))
        functions.append(helper.make_function("local", f"f{index}", ["a"], ["b"], body, OPSET))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    entry = data.draw(st.integers(0, count - 1), label="entry")
    tail, inits = _bn_tail("called")
    call = helper.make_node(f"f{entry}", ["x"], ["called"], domain="local")
    return _model(
        [call, *tail],
        inits,
        [x],
        [_output("fz.y")],
        opsets=[*OPSET, helper.make_opsetid("local", 1)],
        functions=functions,
    )


def _int_constant(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(values, dtype=np.int64), name)


def _chain_step(data: st.DataObject, index: int, current: str, inits: list) -> tuple[Any, str]:
    """One shape operator applied to ``current`` (a 1-D int64 tensor), with drawn constants."""
    out = f"s{index}"
    op = data.draw(
        st.sampled_from(
            [
                "Concat",
                "ConstantOfShape",
                "Expand",
                "Range",
                "Tile",
                "Slice",
                "Gather",
                "Mul",
                "Add",
                "Unsqueeze",
                "Squeeze",
                "Shape",
                "Reshape",
                "Cast",
            ]
        ),
        label=f"op {index}",
    )
    values = data.draw(st.lists(st.sampled_from(SIZES), min_size=1, max_size=3), label="values")
    const = f"k{index}"
    inits.append(_int_constant(const, values))
    if op == "Concat":
        node = helper.make_node("Concat", [current, const, current], [out], axis=0)
    elif op == "ConstantOfShape":
        node = helper.make_node(
            "ConstantOfShape",
            [const if data.draw(st.booleans(), label="const shape") else current],
            [out],
            value=helper.make_tensor("one", TensorProto.INT64, [1], [1]),
        )
    elif op in ("Expand", "Tile", "Mul", "Add", "Reshape"):
        node = helper.make_node(op, [current, const], [out])
    elif op == "Range":
        scalars = [f"r{index}_{k}" for k in range(3)]
        for name, value in zip(scalars, (*values, 0, 1, 1)[:3], strict=True):
            inits.append(numpy_helper.from_array(np.array(value, np.int64), name))
        node = helper.make_node("Range", scalars, [out])
    elif op == "Slice":
        node = helper.make_node("Slice", [current, const, const], [out])
    elif op == "Gather":
        node = helper.make_node("Gather", [current, const], [out], axis=0)
    elif op in ("Unsqueeze", "Squeeze"):
        node = helper.make_node(op, [current, const], [out])
    elif op == "Shape":
        node = helper.make_node("Shape", [current], [out])
    else:
        node = helper.make_node("Cast", [current], [out], to=TensorProto.INT64)
    return node, out


def shape_chain_model(data: st.DataObject) -> onnx.ModelProto:
    """A chain of 1-6 shape operators from a declared 1-D int64 input of drawn length (huge
    lengths included) to a Reshape and an Expand of the data, then Conv -> BN."""
    length = data.draw(st.sampled_from(SIZES[:-2]), label="declared length")
    source = helper.make_tensor_value_info("shape_in", TensorProto.INT64, [max(length, 0)])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    nodes, inits, current = [], [], "shape_in"
    for index in range(data.draw(st.integers(1, 6), label="chain length")):
        node, current = _chain_step(data, index, current, inits)
        nodes.append(node)
    nodes += [
        helper.make_node("Reshape", ["x", current], ["reshaped"]),
        helper.make_node("Expand", ["x", current], ["expanded"]),
    ]
    tail, bn_inits = _bn_tail("x")
    outputs = [_output(name) for name in ("reshaped", "expanded", "fz.y")]
    return _model([*nodes, *tail], inits + bn_inits, [x, source], outputs)


CONSTRUCTS = {
    "einsum": einsum_model,
    "functions": function_model,
    "shape_chain": shape_chain_model,
}
