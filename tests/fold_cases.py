"""Models for issue 13's classes: folds bnlint must write (or refuse truthfully), and folds
made by other tools, exact in another form or wrong, that the audit must judge by function.

Builders return ``onnx.ModelProto``; the ``peer_*`` functions take an original model and
return what a tool wrote (each written by hand here, independently of bnlint).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.fold_models import typed
from tests.zoo.onnx_builder import GraphBuilder


def _bn_terms(model: onnx.ModelProto, bn: onnx.NodeProto) -> tuple[np.ndarray, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    gamma, beta, mean, var = (values[name] for name in bn.input[1:5])
    eps = next((a.f for a in bn.attribute if a.name == "epsilon"), np.float32(1e-5))
    mult = gamma / np.sqrt(var + float(eps))
    return mult, beta - mean * mult


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def _init(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def _set(model: onnx.ModelProto, name: str, values: np.ndarray) -> None:
    tensor = _init(model, name)
    dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
    tensor.CopyFrom(numpy_helper.from_array(np.asarray(values).astype(dtype), name))


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    return copy


def _drop(model: onnx.ModelProto, names: set[str]) -> None:
    kept = [n for n in model.graph.node if n.name not in names]
    del model.graph.node[:]
    model.graph.node.extend(kept)


def _rewire(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
    for output in model.graph.output:
        if output.name == old:
            output.name = new


# -- item 2: what bnlint fold must never write wrongly ---------------------------------------
def weight_also_output(dtype=np.float32) -> onnx.ModelProto:
    """Conv -> BN where the Conv weight is also a graph output."""
    g = GraphBuilder(dtype=dtype)
    x = g.input("x", ["N", 3, 8, 8])
    y = g.relu(g.bn(g.conv(x, 4, name="conv"), name="bn"))
    model = typed(g, [y])
    weight = _init(model, "conv.weight")
    model.graph.output.append(
        helper.make_tensor_value_info("conv.weight", weight.data_type, list(weight.dims))
    )
    return model


def gemm_bias_read_elsewhere() -> onnx.ModelProto:
    """Gemm -> BN where the Gemm's C is also added to the BN output."""
    g = GraphBuilder()
    x = g.input("x", ["N", 12])
    y = g.bn(g.gemm(x, 6, name="fc"), name="bn")
    return typed(g, [g.add(y, "fc.bias", name="add_c")])


def matmul_runtime_rank(length: int | str = "K") -> onnx.ModelProto:
    """Reshape(x, shape) with a run-time shape -> MatMul -> BN: with ``length`` "K" the
    BN input's rank is unknown until run time."""
    g = GraphBuilder()
    x = g.input("x", ["N", 36])
    shape = g.input("shape", [length], TensorProto.INT64)
    (h,) = g.node("Reshape", [x, shape], name="reshape")
    h = g.matmul(h, 6, name="mm", cin=6)
    return typed(g, [g.bn(h, name="bn", c=6)])


def matmul_vector_weight() -> onnx.ModelProto:
    """x (N, 6, 6) @ w (6,) -> (N, 6) -> BN(6): the weight's only axis is the reduction axis."""
    g = GraphBuilder()
    x = g.input("x", ["N", 6, 6])
    weight = g.param("mm.weight", g.rng.normal(0, 0.3, 6))
    (h,) = g.node("MatMul", [x, weight], name="mm")
    return typed(g, [g.bn(h, name="bn", c=6)])


# -- item 5: exact folds bnlint must make ----------------------------------------------------
def conv_bn_bn() -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.input("x", ["N", 3, 8, 8])
    h = g.bn(g.bn(g.conv(x, 4, name="conv"), name="bn1"), name="bn2")
    return typed(g, [g.relu(h)])


def bn_conv_bn() -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.input("x", ["N", 3, 8, 8])
    h = g.bn(g.relu(x), name="bn1", c=3)
    h = g.bn(g.conv(h, 4, k=1, pads=[0, 0, 0, 0], name="conv"), name="bn2")
    return typed(g, [g.relu(h)])


def bn_then_same_conv(k: int, stride: int, size: int = 8) -> onnx.ModelProto:
    """ReLU -> BN -> Conv(auto_pad=SAME_UPPER): pads nothing when k=1,s=1 or k=2,s=2 on even."""
    g = GraphBuilder()
    x = g.input("x", ["N", 3, size, size])
    h = g.bn(g.relu(x), name="bn", c=3)
    weight = g.param("conv.weight", g.rng.normal(0, 0.3, (4, 3, k, k)))
    (y,) = g.node(
        "Conv",
        [h, weight, g.param("conv.bias", g.rng.normal(0, 0.1, 4))],
        name="conv",
        auto_pad="SAME_UPPER",
        strides=[stride, stride],
        kernel_shape=[k, k],
    )
    return typed(g, [y])


def bn_then_grouped_conv() -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.input("x", ["N", 4, 7, 7])
    h = g.bn(g.relu(x), name="bn", c=4)
    return typed(g, [g.conv(h, 6, 3, groups=2, pads=[0, 0, 0, 0], name="conv")])


def matmul_transpose_bn() -> onnx.ModelProto:
    """(N, L, K) @ W -> (N, L, C) -> Transpose -> (N, C, L) -> BN: the BatchNorm1d layout."""
    g = GraphBuilder()
    x = g.input("x", ["N", 5, 12])
    h = g.matmul(x, 6, name="mm", cin=12)
    (h,) = g.node("Transpose", [h], name="transpose", perm=[0, 2, 1])
    return typed(g, [g.relu(g.bn(h, name="bn", c=6))])


def conv_add_bias_bn() -> onnx.ModelProto:
    """Conv without bias -> Add(constant (1, C, 1, 1)) -> BN: how Paddle exports."""
    g = GraphBuilder()
    x = g.input("x", ["N", 3, 8, 8])
    h = g.conv(x, 4, name="conv", bias=False)
    (h,) = g.node("Add", [h, g.param("conv.bias", g.rng.normal(0, 0.1, (1, 4, 1, 1)))], name="bias")
    g.channels[h] = 4
    return typed(g, [g.relu(g.bn(h, name="bn"))])


def _body(nodes, inputs, outputs, initializers=()) -> onnx.GraphProto:
    return helper.make_graph(nodes, "body", inputs, outputs, list(initializers))


def bn_in_if() -> onnx.ModelProto:
    """If(cond): then Conv -> BN, else Conv -> Relu; both on the outer x (weights inside)."""
    rng = np.random.default_rng(3)
    f = np.float32

    def conv_init(prefix: str):
        return [
            numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(f), f"{prefix}.w"),
            numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(f), f"{prefix}.b"),
        ]

    bn_inits = [
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 4).astype(f), "bn.weight"),
        numpy_helper.from_array(rng.normal(0, 0.2, 4).astype(f), "bn.bias"),
        numpy_helper.from_array(rng.normal(0, 0.5, 4).astype(f), "bn.running_mean"),
        numpy_helper.from_array(rng.uniform(0.3, 2, 4).astype(f), "bn.running_var"),
    ]
    out = helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, None)
    then = _body(
        [
            helper.make_node("Conv", ["x", "a.w", "a.b"], ["a_out"], name="conv_a", pads=[1] * 4),
            helper.make_node(
                "BatchNormalization",
                ["a_out", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
                ["branch_out"],
                name="bn",
            ),
        ],
        [],
        [out],
        conv_init("a") + bn_inits,
    )
    other = _body(
        [
            helper.make_node("Conv", ["x", "b.w", "b.b"], ["b_out"], name="conv_b", pads=[1] * 4),
            helper.make_node("Relu", ["b_out"], ["branch_out"], name="relu_b"),
        ],
        [],
        [helper.make_tensor_value_info("branch_out", TensorProto.FLOAT, None)],
        conv_init("b"),
    )
    node = helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then, else_branch=other)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8]),
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model


def bn_in_loop() -> onnx.ModelProto:
    """Loop(trip count M): body Conv -> BN -> Relu on the carried state."""
    rng = np.random.default_rng(4)
    f = np.float32
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (3, 3, 3, 3)).astype(f), "c.w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 3).astype(f), "c.b"),
        numpy_helper.from_array(rng.uniform(0.5, 1.5, 3).astype(f), "bn.weight"),
        numpy_helper.from_array(rng.normal(0, 0.2, 3).astype(f), "bn.bias"),
        numpy_helper.from_array(rng.normal(0, 0.5, 3).astype(f), "bn.running_mean"),
        numpy_helper.from_array(rng.uniform(0.3, 2, 3).astype(f), "bn.running_var"),
    ]
    body = _body(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep"),
            helper.make_node("Conv", ["state", "c.w", "c.b"], ["c_out"], name="conv", pads=[1] * 4),
            helper.make_node(
                "BatchNormalization",
                ["c_out", "bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"],
                ["bn_out"],
                name="bn",
            ),
            helper.make_node("Relu", ["bn_out"], ["state_out"], name="relu"),
        ],
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state", TensorProto.FLOAT, None),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("state_out", TensorProto.FLOAT, None),
        ],
        inits,
    )
    node = helper.make_node("Loop", ["M", "", "x"], ["y"], name="loop", body=body)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6]),
            helper.make_tensor_value_info("M", TensorProto.INT64, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    model.ir_version = 8
    return model


# -- item 6: real-model traits ----------------------------------------------------------------
def pruned_channels() -> onnx.ModelProto:
    """Channels 1 and 3 fully pruned: weights 5e-40, gamma 1e-30, variance 6e-45."""
    g = GraphBuilder()
    x = g.input("x", ["N", 4, 8, 8])
    conv = g.conv(x, 4, name="conv", bias=False)
    model = typed(g, [g.relu(g.bn(conv, name="bn"))])
    weight = numpy_helper.to_array(_init(model, "conv.weight")).copy()
    weight[[1, 3]] = 5e-40
    _set(model, "conv.weight", weight)
    for role, value in (("weight", 1e-30), ("bias", 0.0), ("running_var", 6e-45)):
        values = numpy_helper.to_array(_init(model, f"bn.{role}")).copy()
        values[[1, 3]] = value
        _set(model, f"bn.{role}", values)
    return model


def sigmoid_near_zero() -> onnx.ModelProto:
    """Conv -> BN (beta = -14) -> Sigmoid: the output sits near 8e-7."""
    g = GraphBuilder()
    x = g.input("x", ["N", 3, 8, 8])
    conv = g.conv(x, 4, name="conv")
    model = typed(g, [g.unary("Sigmoid", g.bn(conv, name="bn"))])
    _set(model, "bn.bias", np.full(4, -14.0))
    _set(model, "bn.weight", np.full(4, 0.05))
    return model


def large_mean() -> onnx.ModelProto:
    """One channel's running mean is 1,560 standard deviations from zero."""
    g = GraphBuilder()
    x = g.input("x", ["N", 3, 8, 8])
    conv = g.conv(x, 4, name="conv")
    model = typed(g, [g.relu(g.bn(conv, name="bn"))])
    bias = numpy_helper.to_array(_init(model, "conv.bias")).copy()
    bias[2] = 1560.0
    _set(model, "conv.bias", bias)
    mean = numpy_helper.to_array(_init(model, "bn.running_mean")).copy()
    mean[2] = 1560.0
    _set(model, "bn.running_mean", mean)
    _set(model, "bn.running_var", np.ones(4))
    return model


def constant_node_weights(cout: int = 640) -> onnx.ModelProto:
    """Conv whose weight (> 1 MiB) and BN parameters are Constant nodes, not initializers."""
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, cout, 2, 2])
    model = typed(g, [g.relu(g.bn(g.conv(x, cout, k=1, name="conv"), name="bn"))])
    constants = []
    for tensor in list(model.graph.initializer):
        constants.append(helper.make_node("Constant", [], [tensor.name], value=tensor))
    del model.graph.initializer[:]
    nodes = constants + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model


def inline_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its Constant nodes turned into initializers (for the hand folds)."""
    copy = _copy(model)
    constants = [n for n in copy.graph.node if n.op_type == "Constant"]
    for node in constants:
        value = next(a.t for a in node.attribute if a.name == "value")
        tensor = onnx.TensorProto()
        tensor.CopyFrom(value)
        tensor.name = node.output[0]
        copy.graph.initializer.append(tensor)
    _drop(copy, {n.name for n in constants})
    kept = [n for n in copy.graph.node if n.op_type != "Constant"]
    del copy.graph.node[:]
    copy.graph.node.extend(kept)
    return copy


def ir3_initializers_as_inputs() -> onnx.ModelProto:
    """IR version 3 (opset 7): every initializer is also listed as a graph input."""
    g = GraphBuilder(opset=7)
    x = g.input("x", [2, 3, 8, 8])
    h = g.bn(g.conv(x, 4, name="conv"), name="bn")
    model = g.model([g.relu(h)], ir_version=3)
    for tensor in model.graph.initializer:
        model.graph.input.append(
            helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
        )
    return model


def conv_transpose_bn() -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.input("x", ["N", 4, 5, 5])
    return typed(g, [g.relu(g.bn(g.conv_transpose(x, 6, name="ct"), name="bn"))])


# -- item 3 and 4: what other tools wrote ----------------------------------------------------
def fold_into(model: onnx.ModelProto, bn_name: str, mult_fn=None) -> onnx.ModelProto:
    """A correct backward fold of ``bn_name`` into its Conv/ConvTranspose/Gemm, by hand
    (``mult_fn`` may change the scale to make it wrong). New weights under new names."""
    folded = _copy(model)
    bn = _node(folded, bn_name)
    mult, shift = _bn_terms(folded, bn)
    if mult_fn is not None:
        mult = mult_fn(mult)
    producer = next(n for n in folded.graph.node if bn.input[0] in n.output)
    weight_tensor = _init(folded, producer.input[1])
    weight = numpy_helper.to_array(weight_tensor).astype(np.float64)
    if producer.op_type == "ConvTranspose":
        factor = mult.reshape(1, -1, *[1] * (weight.ndim - 2))
    else:
        factor = mult.reshape(-1, *[1] * (weight.ndim - 1))
    bias = (
        numpy_helper.to_array(_init(folded, producer.input[2])).astype(np.float64)
        if len(producer.input) > 2
        else 0.0
    )
    dtype = helper.tensor_dtype_to_np_dtype(weight_tensor.data_type)
    w_name, b_name = f"{producer.name}.{bn_name}.w_f", f"{producer.name}.{bn_name}.b_f"
    folded.graph.initializer.extend(
        [
            numpy_helper.from_array((weight * factor).astype(dtype), w_name),
            numpy_helper.from_array((bias * mult + shift).astype(dtype), b_name),
        ]
    )
    producer.input[1] = w_name
    if len(producer.input) > 2:
        producer.input[2] = b_name
    else:
        producer.input.append(b_name)
    producer.output[0] = bn.output[0]
    _drop(folded, {bn_name})
    return folded


def peer_mul_add(model: onnx.ModelProto, bn_name: str = "bn") -> onnx.ModelProto:
    """The BN rewritten as x * m + s."""
    folded = _copy(model)
    bn = _node(folded, bn_name)
    mult, shift = _bn_terms(folded, bn)
    dtype = helper.tensor_dtype_to_np_dtype(_init(folded, bn.input[1]).data_type)
    shape = (-1, 1, 1)
    folded.graph.initializer.extend(
        [
            numpy_helper.from_array(mult.reshape(shape).astype(dtype), "bn_mul"),
            numpy_helper.from_array(shift.reshape(shape).astype(dtype), "bn_add"),
        ]
    )
    index = list(folded.graph.node).index(bn)
    folded.graph.node.remove(bn)
    folded.graph.node.insert(index, helper.make_node("Mul", [bn.input[0], "bn_mul"], ["bn_m"]))
    folded.graph.node.insert(index + 1, helper.make_node("Add", ["bn_m", "bn_add"], [bn.output[0]]))
    return folded


def peer_depthwise(model: onnx.ModelProto, bn_name: str = "bn") -> onnx.ModelProto:
    """The BN rewritten as a 1x1 depthwise Conv (weight m, bias s)."""
    folded = _copy(model)
    bn = _node(folded, bn_name)
    mult, shift = _bn_terms(folded, bn)
    channels = mult.size
    folded.graph.initializer.extend(
        [
            numpy_helper.from_array(mult.reshape(channels, 1, 1, 1).astype(np.float32), "dw.w"),
            numpy_helper.from_array(shift.astype(np.float32), "dw.b"),
        ]
    )
    index = list(folded.graph.node).index(bn)
    folded.graph.node.remove(bn)
    folded.graph.node.insert(
        index,
        helper.make_node(
            "Conv", [bn.input[0], "dw.w", "dw.b"], [bn.output[0]], name="bn_as_dw", group=channels
        ),
    )
    return folded


def conv_bn_conv() -> onnx.ModelProto:
    """Conv -> BN -> unpadded Conv: a peer may fold the BN forward instead of backward."""
    g = GraphBuilder()
    x = g.input("x", ["N", 3, 8, 8])
    h = g.bn(g.conv(x, 4, name="conv1"), name="bn")
    return typed(g, [g.relu(g.conv(h, 5, k=1, pads=[0] * 4, name="conv2"))])


def peer_forward(model: onnx.ModelProto, bn_name: str, conv_name: str) -> onnx.ModelProto:
    folded = _copy(model)
    bn, conv = _node(folded, bn_name), _node(folded, conv_name)
    mult, shift = _bn_terms(folded, bn)
    weight = numpy_helper.to_array(_init(folded, conv.input[1])).astype(np.float64)
    bias = numpy_helper.to_array(_init(folded, conv.input[2])).astype(np.float64)
    new_w = weight * mult.reshape(1, -1, *[1] * (weight.ndim - 2))
    new_b = bias + (weight * shift.reshape(1, -1, *[1] * (weight.ndim - 2))).sum(
        axis=tuple(range(1, weight.ndim))
    )
    folded.graph.initializer.extend(
        [
            numpy_helper.from_array(new_w.astype(np.float32), "fwd.w"),
            numpy_helper.from_array(new_b.astype(np.float32), "fwd.b"),
        ]
    )
    conv.input[0], conv.input[1], conv.input[2] = bn.input[0], "fwd.w", "fwd.b"
    _drop(folded, {bn_name})
    return folded


def peer_compose(model: onnx.ModelProto, first: str, second: str) -> onnx.ModelProto:
    """Conv -> BN1 -> BN2 composed into the Conv (what onnxsim and OnnxSlim write)."""
    once = fold_into(model, first)
    return fold_into(once, second)


def peer_bn_applied_twice(model: onnx.ModelProto, bn_name: str = "bn") -> onnx.ModelProto:
    """The producer absorbed the BN, but the BN was left in place too."""
    folded = fold_into(model, bn_name)
    bn = _node(model, bn_name)
    producer = next(n for n in folded.graph.node if bn.output[0] in n.output)
    producer.output[0] = bn.input[0]
    index = list(folded.graph.node).index(producer)
    kept = onnx.NodeProto()
    kept.CopyFrom(bn)
    folded.graph.node.insert(index + 1, kept)
    return folded


def peer_shared_in_place(model: onnx.ModelProto) -> onnx.ModelProto:
    """fm.shared_weight folded by scaling the shared weight in place for bn_a only."""
    folded = _copy(model)
    bn = _node(folded, "bn_a")
    mult, shift = _bn_terms(folded, bn)
    weight = numpy_helper.to_array(_init(folded, "shared.weight")).astype(np.float64)
    _set(folded, "shared.weight", weight * mult.reshape(-1, 1, 1, 1))
    conv = _node(folded, "conv_a")
    dtype = helper.tensor_dtype_to_np_dtype(_init(folded, "shared.weight").data_type)
    folded.graph.initializer.append(numpy_helper.from_array(shift.astype(dtype), "conv_a.bias_f"))
    conv.input.append("conv_a.bias_f")
    conv.output[0] = bn.output[0]
    _drop(folded, {"bn_a"})
    return folded


def peer_float32_weights_in_float16(model: onnx.ModelProto) -> onnx.ModelProto:
    """A float16 model whose folded weights are stored as float32 (invalid ONNX)."""
    folded = fold_into(model, "bn")
    conv = next(n for n in folded.graph.node if n.op_type == "Conv")
    for name in conv.input[1:]:
        tensor = _init(folded, name)
        tensor.CopyFrom(
            numpy_helper.from_array(numpy_helper.to_array(tensor).astype(np.float32), name)
        )
    return folded


def peer_rename_bn(model: onnx.ModelProto, bn_name: str = "bn") -> onnx.ModelProto:
    """Another exporter's names: the BN node and its output renamed, nothing folded."""
    renamed = _copy(model)
    bn = _node(renamed, bn_name)
    old = bn.output[0]
    bn.name = "BatchNormalization_17"
    bn.output[0] = "onnx::BatchNormalization_42"
    _rewire(renamed, old, bn.output[0])
    return renamed


def peer_in_then_branch(model: onnx.ModelProto, wrong: bool) -> onnx.ModelProto:
    """bn_in_if with the then-branch BN folded into conv_a (eps ignored when ``wrong``)."""
    folded = _copy(model)
    then = next(a.g for a in folded.graph.node[0].attribute if a.name == "then_branch")
    body = helper.make_model(then, opset_imports=model.opset_import)
    fixed = fold_into(body, "bn", (lambda m: m * 1.5) if wrong else None)
    then.CopyFrom(fixed.graph)
    return folded


def with_output_padding(model: onnx.ModelProto) -> onnx.ModelProto:
    folded = fold_into(model, "bn")
    node = next(n for n in folded.graph.node if n.op_type == "ConvTranspose")
    node.attribute.append(helper.make_attribute("output_padding", [0, 0]))
    return folded


def peer_bfloat16_arithmetic(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnxoptimizer-style: the folded weight computed at run time, in bfloat16."""
    folded = _copy(model)
    bn = _node(folded, "bn")
    conv = next(n for n in folded.graph.node if bn.input[0] in n.output)
    g_, b_, m_, v_ = bn.input[1:5]
    eps_name = "eps_const"
    folded.graph.initializer.append(helper.make_tensor(eps_name, TensorProto.BFLOAT16, [], [1e-5]))
    nodes = [
        helper.make_node("Add", [v_, eps_name], ["v_eps"]),
        helper.make_node("Sqrt", ["v_eps"], ["std"]),
        helper.make_node("Div", [g_, "std"], ["mult"]),
        helper.make_node("Unsqueeze", ["mult", "axes"], ["mult4"]),
        helper.make_node("Mul", [conv.input[1], "mult4"], ["w_f"]),
        helper.make_node("Mul", [m_, "mult"], ["m_mult"]),
        helper.make_node("Sub", [b_, "m_mult"], ["shift"]),
        helper.make_node("Mul", [conv.input[2], "mult"], ["b_mult"]),
        helper.make_node("Add", ["b_mult", "shift"], ["b_f"]),
    ]
    folded.graph.initializer.append(numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"))
    conv.input[1], conv.input[2] = "w_f", "b_f"
    conv.output[0] = bn.output[0]
    _drop(folded, {"bn"})
    index = list(folded.graph.node).index(conv)
    for offset, node in enumerate(nodes):
        folded.graph.node.insert(index + offset, node)
    return folded


def bfloat16_conv_bn() -> onnx.ModelProto:
    """A bfloat16 Conv -> BN (no ONNX Runtime kernel: only bnlint's evaluators can run it)."""
    return float64_to(plain_conv_bn(np.float32), TensorProto.BFLOAT16)


def plain_conv_bn(dtype) -> onnx.ModelProto:
    g = GraphBuilder(dtype=dtype)
    x = g.input("x", ["N", 3, 8, 8])
    return typed(g, [g.relu(g.bn(g.conv(x, 4, name="conv"), name="bn"))])


def float64_to(model: onnx.ModelProto, elem_type: int) -> onnx.ModelProto:
    """``model`` (float32 or float64) with every float tensor converted to ``elem_type``."""
    converted = _copy(model)
    graph = converted.graph
    for index, tensor in enumerate(graph.initializer):
        values = numpy_helper.to_array(tensor).astype(np.float32)
        flat = [float(v) for v in values.reshape(-1)]
        graph.initializer[index].CopyFrom(
            helper.make_tensor(tensor.name, elem_type, list(values.shape), flat)
        )
    for value in [*graph.input, *graph.output, *graph.value_info]:
        if value.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.DOUBLE):
            value.type.tensor_type.elem_type = elem_type
    return converted


def opset6_conv_bn() -> onnx.ModelProto:
    """Opset 6 (BN with is_test=1): below ONNX Runtime's oldest supported opset."""
    g = GraphBuilder(opset=6)
    x = g.input("x", [2, 3, 8, 8])
    return g.model([g.relu(g.bn(g.conv(x, 4, name="conv"), name="bn"))], ir_version=3)


def float64_bn_without_eps() -> onnx.ModelProto:
    """A float64 Conv -> BN with no epsilon attribute (the float32 default 1e-5 applies)."""
    return plain_conv_bn(np.float64)


FoldBuilder = Callable[[], onnx.ModelProto]
# Traits of shipped models (issue 13 item 6) that must neither be refused nor called wrong.
TRAITS: dict[str, FoldBuilder] = {
    "pruned-channels": pruned_channels,
    "sigmoid-near-zero": sigmoid_near_zero,
    "constant-node-weights": constant_node_weights,
    "large-running-mean": large_mean,
}
