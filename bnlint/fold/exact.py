"""Evaluate a list of ONNX nodes in float64, with a magnitude bound for every tensor.

This is the engine of the algebraic level: no runtime is involved, and each op follows
the ONNX specification. Floating tensors are carried as float64 holding the exact stored
values; arithmetic on the data path is exact up to float64 rounding, while arithmetic
that a model performs on constants (a peer tool's ``W * gamma / sqrt(var + eps)`` left in
the graph) is rounded into its dtype after every op, as a runtime computes it. ``Cast``
always rounds. Next to each value the evaluator carries ``mag``, the value the same
computation gives on absolute values (``|W| * |x| + |b|`` for a Conv, ``(|x| + |mean|) *
|scale| + |beta|`` for a BatchNorm): the scale of the rounding error any float
implementation of it can make (Higham's running error analysis).

Every op computes its output size before allocating (:class:`SizeLimit`); an op this module
does not implement is run by ``onnx.reference`` when its output cannot outgrow its inputs,
else it is refused (:class:`EvalError`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from onnx import AttributeProto, NodeProto, TensorProto, helper

from bnlint.analysis.reference import unit_roundoff
from bnlint.fold import exact_ops as ops
from bnlint.fold.exact_ops import EvalError, SizeLimit, check_size
from bnlint.fold.exact_values import (
    FLOATS,
    HANDLERS,
    Handler,
    Tensor,
    as_tensor,
    handles,
    output_tensor,
)
from bnlint.onnx.model_io import round_to

__all__ = ["FLOATS", "EvalError", "Evaluator", "SizeLimit", "Tensor"]

EPS_DEFAULT = float(np.float32(1e-5))  # BatchNormalization's epsilon is a float attribute
# Ops onnx.reference may run for us: none can make an output larger than its inputs.
REFERENCE_OPS = frozenset(
    {
        "Abs", "Ceil", "Clip", "Cos", "Elu", "Erf", "Exp", "Floor", "Gelu", "GlobalAveragePool",
        "GlobalMaxPool", "HardSigmoid", "HardSwish", "LeakyRelu", "Log", "Max", "Mean", "Min",
        "Mish", "PRelu", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum", "Relu", "Round",
        "Selu", "Sigmoid", "Sign", "Sin", "Softmax", "Softplus", "Softsign", "Tanh", "Where",
        "MaxPool", "AveragePool", "Equal", "Greater", "Less", "Not", "And", "Or",
    }
)  # fmt: skip
# Unary ops whose derivative is bounded by 1 (errors pass through them undamped).
LIPSCHITZ_ONE = frozenset({"Relu", "LeakyRelu", "Clip", "MaxPool", "GlobalMaxPool", "Abs"})


def attributes(node: NodeProto, read_tensor: Callable[[TensorProto], np.ndarray]) -> dict:
    found: dict[str, Any] = {}
    for attribute in node.attribute:
        if attribute.type == AttributeProto.TENSOR:
            found[attribute.name] = attribute.t
        elif attribute.type in (AttributeProto.GRAPH, AttributeProto.GRAPHS):
            raise EvalError(f"{node.op_type} with a subgraph is not evaluated here")
        else:
            value = helper.get_attribute_value(attribute)
            found[attribute.name] = value.decode() if isinstance(value, bytes) else value
    return found


class Evaluator:
    """Runs nodes on float64 tensors. ``read_tensor`` decodes a TensorProto (bnlint's own
    reader, through the external-data resolver); ``constant`` resolves an initializer or
    outer-scope name to ``(array, dtype)`` or None."""

    def __init__(
        self,
        opset: int,
        constant: Callable[[str], tuple[np.ndarray, str] | None],
        read_tensor: Callable[[TensorProto], np.ndarray],
        *,
        magnitudes: bool = True,
    ) -> None:
        self.opset = opset
        self.constant = constant
        self.read_tensor = read_tensor
        self.magnitudes = magnitudes
        self.dtype_of: Callable[[str, Tensor], str] = lambda name, like: like.dtype

    def run(
        self, nodes: Sequence[NodeProto], feeds: Mapping[str, Tensor], wanted: Sequence[str]
    ) -> dict[str, Tensor]:
        env: dict[str, Tensor] = dict(feeds)
        for node in nodes:
            if node.op_type == "CastLike" and len(node.input) > 1 and node.input[1] not in env:
                source = self._lookup(env, node.input[0])  # only the dtype of input 1 matters
                inputs = [source, Tensor(np.zeros(0), self.dtype_of(node.input[1], source))]
            else:
                inputs = [self._lookup(env, name) if name else None for name in node.input]
            attrs = attributes(node, self.read_tensor)
            handler = HANDLERS.get(node.op_type)
            if node.domain not in ("", "ai.onnx"):
                raise EvalError(f"{node.domain}::{node.op_type} is not a standard op")
            if handler is None:
                handler = _reference
            with np.errstate(all="ignore"):
                outputs = handler(self, node, inputs, attrs)
            for name, tensor in zip(node.output, outputs, strict=False):
                if name:
                    if tensor.constant and tensor.dtype in FLOATS:
                        tensor.value = round_to(tensor.value, tensor.dtype)
                    if not self.magnitudes:
                        tensor.mag = None
                    env[name] = tensor
        missing = [name for name in wanted if name not in env]
        if missing:
            raise EvalError(f"the nodes do not compute {missing[0]!r}")
        return {name: env[name] for name in wanted}

    def _lookup(self, env: dict[str, Tensor], name: str) -> Tensor:
        if name in env:
            return env[name]
        found = self.constant(name)
        if found is None:
            raise EvalError(f"{name!r} is neither computed nor a constant")
        array, dtype = found
        check_size(np.size(array), f"constant {name!r}")
        env[name] = tensor = as_tensor(array, dtype, constant=True)
        return tensor


def _float(inputs: Sequence[Tensor | None]) -> str:
    return next((t.dtype for t in inputs if t is not None and t.dtype in FLOATS), "float32")


@handles("Conv", "ConvTranspose")
def _conv(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    kernel = ops.conv if node.op_type == "Conv" else ops.conv_transpose
    value = kernel(x.value, w.value, None if b is None else b.value, attrs)
    mag = None
    if ev.magnitudes:
        bias = None if b is None else b.magnitude
        mag = kernel(x.magnitude, np.abs(w.value), bias, attrs)
    return [output_tensor(value, _float(inputs), inputs, mag)]


@handles("Gemm")
def _gemm(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    value = ops.gemm(a.value, b.value, None if c is None else c.value, attrs)
    mag = None
    if ev.magnitudes:
        absolute = {
            **attrs,
            "alpha": abs(attrs.get("alpha", 1.0)),
            "beta": abs(attrs.get("beta", 1.0)),
        }
        mag = ops.gemm(a.magnitude, b.magnitude, None if c is None else c.magnitude, absolute)
    return [output_tensor(value, _float(inputs), inputs, mag)]


@handles("MatMul")
def _matmul(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
    a, b = inputs
    value = ops.matmul(a.value, b.value)
    mag = ops.matmul(a.magnitude, b.magnitude) if ev.magnitudes else None
    return [output_tensor(value, _float(inputs), inputs, mag)]


@handles("BatchNormalization")
def _batch_norm(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
    x, params = inputs[0], [t.value for t in inputs[1:5]]
    if None in inputs[:5]:
        raise EvalError("BatchNormalization without all five inputs")
    if ev.opset < 7:
        training = attrs.get("is_test", 0) == 0
    elif ev.opset < 14:
        training = len([o for o in node.output if o]) > 1
    else:
        training = bool(attrs.get("training_mode", 0))
    spatial = ev.opset >= 9 or attrs.get("spatial", 1) != 0
    eps = float(attrs.get("epsilon", EPS_DEFAULT))
    value, mult, mean = ops.batch_norm(x.value, params, eps, training, spatial)
    mag = None
    if ev.magnitudes:
        shape = np.shape(mult)
        var = np.abs(params[3]).reshape(shape) if not training else 0.0
        mag = (x.magnitude + np.abs(mean)) * np.abs(mult) + np.abs(params[1]).reshape(shape)
        # epsilon is a float32 attribute: a fold may use the decimal it was rounded from
        # (1e-5 for float32(1e-5)); in units of this dtype's rounding that changes y by
        eps_units = eps * 2.0**-24 / (2 * (var + eps)) / unit_roundoff(x.dtype)
        mag = mag + np.abs((x.value - mean) * mult) * eps_units
    return [output_tensor(value, _float(inputs), inputs, mag)]


def _elementwise(function: Callable, mag_rule: str) -> Handler:
    def handler(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
        a, b = inputs[0], inputs[1]
        try:
            shape = np.broadcast_shapes(a.value.shape, b.value.shape)
        except ValueError as error:
            raise EvalError(f"{node.op_type}: {error}") from None
        check_size(math.prod(shape), f"{node.op_type} output")
        value = function(a.value, b.value)
        mag = None
        if ev.magnitudes and a.dtype in FLOATS:
            if mag_rule == "sum":
                mag = a.magnitude + b.magnitude
            elif mag_rule == "product":
                mag = a.magnitude * b.magnitude
            else:  # quotient: the divisor's own value bounds it
                mag = a.magnitude / np.abs(b.value)
        dtype = a.dtype if a.dtype == b.dtype or b.dtype not in FLOATS else _float(inputs)
        return [output_tensor(value, dtype, inputs, mag)]

    return handler


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.trunc(a / b).astype(a.dtype)
    return a / b


HANDLERS["Add"] = _elementwise(np.add, "sum")
HANDLERS["Sub"] = _elementwise(np.subtract, "sum")
HANDLERS["Mul"] = _elementwise(np.multiply, "product")
HANDLERS["Div"] = _elementwise(_divide, "quotient")
HANDLERS["Pow"] = _elementwise(np.power, "product")


def _unary(function: Callable, mag_rule: str = "abs") -> Handler:
    def handler(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
        x = inputs[0]
        value = function(x.value)
        mag = None
        if ev.magnitudes:
            if mag_rule == "same":
                mag = x.magnitude
            elif mag_rule == "sqrt":
                mag = np.sqrt(x.magnitude)
        return [output_tensor(value, x.dtype, inputs, mag)]

    return handler


HANDLERS["Neg"] = _unary(np.negative, "same")
HANDLERS["Identity"] = _unary(lambda v: v, "same")
HANDLERS["Sqrt"] = _unary(np.sqrt, "sqrt")
HANDLERS["Reciprocal"] = _unary(np.reciprocal)
HANDLERS["Relu"] = _unary(lambda v: np.maximum(v, 0), "same")


def _reference(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
    """An op this module does not implement, run by onnx.reference when it is size-safe."""
    if node.op_type not in REFERENCE_OPS:
        raise EvalError(f"{node.op_type} is not evaluated (bnlint cannot bound its output)")
    from onnx.reference import ReferenceEvaluator

    present = [(f"i{k}", t) for k, t in enumerate(inputs) if t is not None]
    names = [f"i{k}" if t is not None else "" for k, t in enumerate(inputs)]
    copy = helper.make_node(node.op_type, names, [f"o{k}" for k in range(len(node.output))])
    copy.attribute.extend(node.attribute)
    graph = helper.make_graph(
        [copy],
        "op",
        [helper.make_tensor_value_info(n, TensorProto.UNDEFINED, None) for n, _ in present],
        [helper.make_tensor_value_info(o, TensorProto.UNDEFINED, None) for o in copy.output],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", max(ev.opset, 7))])
    feeds = {n: t.value for n, t in present}
    try:
        values = ReferenceEvaluator(model).run(None, feeds)
    except Exception as error:
        raise EvalError(f"{node.op_type}: {type(error).__name__}: {error}") from None
    dtype = _float(inputs)
    results = []
    for value in values:
        value = np.asarray(value)
        mag = None
        if ev.magnitudes and value.dtype.kind == "f":
            source = inputs[0]
            lipschitz = node.op_type in LIPSCHITZ_ONE and source is not None
            same = lipschitz and source.value.shape == value.shape
            mag = np.maximum(source.magnitude, np.abs(value)) if same else np.abs(value)
            if not same and source is not None and source.dtype in FLOATS:
                mag = mag + float(np.max(source.magnitude, initial=0.0))
        kind = dtype if value.dtype.kind == "f" else value.dtype.name
        results.append(output_tensor(value, kind, inputs, mag))
    return results


# The ops that move or build values without arithmetic register themselves here.
from bnlint.fold import exact_shapes  # noqa: E402, F401
