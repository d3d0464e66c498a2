"""Models for the fold/verify/audit tests, an independent ORT comparison, and wrong folds.

``hand_fold`` is a deliberately separate, minimal folder written for the tests (it shares no
code with ``bnlint.fold``). With ``bug=None`` it folds correctly; each named bug
reproduces a bug class that real tools shipped (ANCHORS.md §2-§3, scenarios 1-5 and 15).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tests.zoo.onnx_builder import GraphBuilder

CRITERION = 2e-6  # max |folded - original| <= CRITERION * max |original| (float32)


def typed(g: GraphBuilder, outputs: Sequence[str], batch: int | str = "N") -> onnx.ModelProto:
    """The builder's model with every graph output typed (onnxsim and the checker want it)."""
    model = g.model(list(outputs))
    inferred = {v.name: v for v in model.graph.value_info}
    for output in model.graph.output:
        if output.name in inferred:
            output.type.CopyFrom(inferred[output.name].type)
    return model


def conv_bn(
    dims: int = 2,
    groups: int = 1,
    dilation: int = 1,
    pads: int | None = None,
    bias: bool = True,
    cin: int = 4,
    cout: int = 8,
    k: int = 3,
    eps: float = 1e-5,
    dtype=np.float32,
) -> onnx.ModelProto:
    g = GraphBuilder(dtype=dtype)
    x = g.input("x", ["N", cin, *([10] * dims)])
    pad = pads if pads is not None else dilation * (k // 2)
    c = g.conv(
        x,
        cout,
        k,
        name="conv",
        groups=groups,
        dims=dims,
        bias=bias,
        dilations=[dilation] * dims,
        pads=[pad] * (2 * dims),
    )
    return typed(g, [g.relu(g.bn(c, name="bn", eps=eps))])


def conv_transpose_bn(
    cin: int = 4, cout: int = 8, groups: int = 1, bias: bool = True, eps: float = 1e-5
) -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.input("x", ["N", cin, 5, 5])
    ct = g.conv_transpose(x, cout, 2, name="ct", groups=groups, bias=bias)
    return typed(g, [g.relu(g.bn(ct, name="bn", eps=eps))])


def gemm_bn(
    trans_b: int = 1, alpha: float = 1.0, beta: float = 1.0, bias: bool = True
) -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.input("x", ["N", 12])
    y = g.gemm(x, 6, name="fc", trans_b=trans_b, alpha=alpha, beta=beta, bias=bias)
    return typed(g, [g.bn(y, name="bn")])


def gemm_trans_a_bn() -> onnx.ModelProto:
    """Gemm(transA=1, transB=0, alpha=2): the input arrives as (K, N) and is transposed."""
    g = GraphBuilder()
    x = g.input("x", [12, "N"])
    weight = g.param("fc.weight", g.rng.normal(0, 0.3, (12, 6)))
    bias = g.param("fc.bias", g.rng.normal(0, 0.1, 6))
    (y,) = g.node("Gemm", [x, weight, bias], name="fc", transA=1, alpha=2.0)
    return typed(g, [g.bn(y, name="bn", c=6)])


def matmul_bn(with_add: bool) -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.input("x", ["N", 12])
    h = g.matmul(x, 6, name="mm")
    if with_add:
        (h,) = g.node("Add", [h, g.param("mm.bias", g.rng.normal(0, 0.1, 6))], name="mm_add")
        g.channels[h] = 6
    return typed(g, [g.bn(h, name="bn")])


def bn_then_conv() -> onnx.ModelProto:
    """BN -> unpadded, ungrouped Conv (forward fold) after a ReLU (no producer to absorb it)."""
    g = GraphBuilder()
    x = g.input("x", ["N", 4, 9, 9])
    h = g.bn(g.relu(x), name="bn", c=4)
    return typed(g, [g.conv(h, 6, 3, name="conv", pads=[0, 0, 0, 0], strides=[2, 2])])


def shared_weight() -> onnx.ModelProto:
    """Two Convs read the same weight; each is followed by its own BN."""
    g = GraphBuilder()
    x = g.input("x", ["N", 4, 8, 8])
    weight = g.param("shared.weight", g.rng.normal(0, 0.3, (4, 4, 3, 3)))
    a = g.node("Conv", [x, weight], name="conv_a", pads=[1, 1, 1, 1])[0]
    b = g.node("Conv", [x, weight], name="conv_b", pads=[1, 1, 1, 1])[0]
    g.channels[a] = g.channels[b] = 4
    return typed(g, [g.bn(a, name="bn_a"), g.bn(b, name="bn_b")])


def two_consumers() -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.input("x", ["N", 4, 8, 8])
    c = g.conv(x, 4, name="conv")
    return typed(g, [g.add(g.bn(c, name="bn"), c, name="add")])


def training_bn(opset: int = 15) -> onnx.ModelProto:
    g = GraphBuilder(opset=opset)
    x = g.input("x", ["N", 3, 8, 8])
    return typed(g, [g.relu(g.bn(g.conv(x, 4, name="conv"), name="bn", training=True))])


def zoo_onnx(name: str) -> onnx.ModelProto:
    """A tests/zoo/torch_models network exported with its BatchNorms preserved."""
    import io
    import warnings

    import torch

    from tests.zoo import torch_models

    model = torch_models.build(name)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch_models.example_input(name),),
            buffer,
            dynamo=False,
            do_constant_folding=False,
            training=torch.onnx.TrainingMode.PRESERVE,
            input_names=["x"],
            dynamic_axes={"x": {0: "N"}},
        )
    return onnx.load_from_string(buffer.getvalue())


def with_lead(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` behind a leading 1x1 Conv (or Gemm) + BN named ``bn_lead``, so a test can
    check that only the right one of two BNs is blamed."""
    lead = onnx.ModelProto()
    lead.CopyFrom(model)
    graph = lead.graph
    source = graph.input[0]
    dims = [d.dim_value or d.dim_param for d in source.type.tensor_type.shape.dim]
    channels = dims[1]
    rng = np.random.default_rng(7)
    entry = source.name + "_in"
    if len(dims) == 2:
        weight = rng.normal(0, 0.3, (channels, channels))
        first = helper.make_node(
            "Gemm", [entry, "lead.w", "lead.b"], ["lead_out"], name="lead", transB=1
        )
    else:
        weight = rng.normal(0, 0.3, (channels, channels, *[1] * (len(dims) - 2)))
        first = helper.make_node("Conv", [entry, "lead.w", "lead.b"], ["lead_out"], name="lead")
    params = {
        "lead.w": weight,
        "lead.b": rng.normal(0, 0.1, channels),
        "bn_lead.s": rng.uniform(0.5, 1.5, channels),
        "bn_lead.b": rng.normal(0, 0.2, channels),
        "bn_lead.m": rng.normal(0, 0.5, channels),
        "bn_lead.v": rng.uniform(0.3, 2.0, channels),
    }
    dtype = helper.tensor_dtype_to_np_dtype(source.type.tensor_type.elem_type)
    graph.initializer.extend(
        numpy_helper.from_array(value.astype(dtype), name) for name, value in params.items()
    )
    bn = helper.make_node(
        "BatchNormalization", ["lead_out", *list(params)[2:]], [source.name], name="bn_lead"
    )
    nodes = [first, bn, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    source.name = entry
    return lead


# -- an independent comparison in ONNX Runtime ------------------------------------------------
def run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)


def seeded_feeds(model: onnx.ModelProto, batch: int = 2, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else batch for d in tensor_type.shape.dim]
        dtype = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        feeds[value.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def max_relative_error(original: onnx.ModelProto, folded: onnx.ModelProto) -> float:
    """max |folded - original| / max |original| over all outputs (seeded inputs)."""
    feeds = seeded_feeds(original)
    worst = 0.0
    for a, b in zip(run(original, feeds), run(folded, feeds), strict=True):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        worst = max(worst, float(np.abs(a64 - b64).max() / np.abs(a64).max()))
    return worst


def op_types(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


# -- a minimal hand-written folder with switchable bugs ---------------------------------------
def hand_fold(
    model: onnx.ModelProto, bug: str | None = None, only: str | None = None
) -> onnx.ModelProto:
    """Fold each BN into the Conv/ConvTranspose/Gemm feeding it, optionally with a bug.

    Bugs: ``axis0`` (ConvTranspose scaled as a Conv weight, reshape(Cout, -1)),
    ``groups`` (grouped ConvTranspose scaled without the group offset), ``eps`` (eps
    ignored), ``bias`` (producer bias not multiplied by the scale), ``beta`` (Gemm beta
    ignored), ``fp16`` (folded weights stored as float16 behind a Cast), ``training``
    (a training-mode BN folded as if in inference mode; otherwise such BNs are skipped).
    With ``only``, the bug hits only the BN of that name; the others are folded correctly.
    """
    folded = onnx.ModelProto()
    folded.CopyFrom(model)
    graph = folded.graph
    values = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    readers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    removed, new_initializers, new_nodes = set(), [], []
    for bn in list(graph.node):
        if bn.op_type != "BatchNormalization":
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in bn.attribute}
        active = bug if only is None or bn.name == only else None
        if attrs.get("training_mode", 0) and active != "training":
            continue
        producer = producers.get(bn.input[0])
        if producer is None or producer.op_type not in ("Conv", "ConvTranspose", "Gemm"):
            continue
        if readers[bn.input[0]] != 1:
            continue
        gamma, beta, mean, var = (values[name] for name in bn.input[1:5])
        eps = 0.0 if active == "eps" else attrs.get("epsilon", 1e-5)
        scale = gamma / np.sqrt(var + eps)
        weight = values[producer.input[1]]
        bias = values[producer.input[2]] if len(producer.input) > 2 else np.zeros_like(gamma)
        p_attrs = {a.name: helper.get_attribute_value(a) for a in producer.attribute}
        groups = p_attrs.get("group", 1)
        if producer.op_type == "Conv":
            weight = weight * scale.reshape(-1, *[1] * (weight.ndim - 1))
        elif producer.op_type == "ConvTranspose" and active == "axis0":
            weight = (weight.reshape(scale.size, -1) * scale[:, None]).reshape(weight.shape)
        elif producer.op_type == "ConvTranspose" and active == "groups":
            weight = weight * scale[: weight.shape[1]].reshape(1, -1, 1, 1)
        elif producer.op_type == "ConvTranspose":
            cin, per_group = weight.shape[:2]
            factor = np.repeat(scale.reshape(groups, 1, per_group), cin // groups, axis=1)
            weight = weight * factor.reshape(cin, per_group, 1, 1)
        else:  # Gemm
            weight = weight * (scale[:, None] if p_attrs.get("transB", 0) else scale[None, :])
            if active != "beta":
                bias = bias * p_attrs.get("beta", 1.0)
                producer.attribute.append(helper.make_attribute("beta", 1.0))
                kept = {a.name: a for a in producer.attribute}
                del producer.attribute[:]
                producer.attribute.extend(kept.values())
        new_bias = beta + (bias - mean) * scale if active != "bias" else beta + bias - mean * scale
        weight_name, bias_name = producer.input[1] + "_f", bn.name + "_fbias"
        if active == "fp16":
            stored = weight_name + "_half"
            new_initializers.append(numpy_helper.from_array(weight.astype(np.float16), stored))
            new_nodes.append(
                helper.make_node("Cast", [stored], [weight_name], to=TensorProto.FLOAT)
            )
        else:
            new_initializers.append(numpy_helper.from_array(weight.astype(np.float32), weight_name))
        new_initializers.append(numpy_helper.from_array(new_bias.astype(np.float32), bias_name))
        producer.input[1] = weight_name
        if len(producer.input) > 2:
            producer.input[2] = bias_name
        else:
            producer.input.append(bias_name)
        producer.output[0] = bn.output[0]
        removed.add(id(bn))
    kept_nodes = [node for node in graph.node if id(node) not in removed]
    del graph.node[:]
    graph.node.extend(new_nodes + kept_nodes)
    graph.initializer.extend(new_initializers)
    return folded
