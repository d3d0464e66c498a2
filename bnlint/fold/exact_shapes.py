"""The evaluator's ops that move or build values (reshape, transpose, concat, cast, ...).

Registered into :data:`bnlint.fold.exact_values.HANDLERS`; each sizes its output first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from onnx import TensorProto

from bnlint.fold.exact_ops import EvalError, check_size
from bnlint.fold.exact_values import (
    FLOATS,
    HANDLERS,
    Handler,
    Tensor,
    as_tensor,
    dtype_name,
    handles,
    output_tensor,
)
from bnlint.onnx.model_io import round_to

if TYPE_CHECKING:
    from bnlint.fold.exact import Evaluator


def _shaped(function: Callable) -> Handler:
    """Ops that move values around: the magnitude moves with them."""

    def handler(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
        x = inputs[0]
        value = function(ev, x.value, inputs, attrs)
        mag = None
        if ev.magnitudes and x.mag is not None:
            mag = function(ev, np.broadcast_to(x.mag, x.value.shape), inputs, attrs)
        return [output_tensor(value, x.dtype, inputs, mag)]

    return handler


def _ints(tensor: Tensor | None) -> list[int] | None:
    return None if tensor is None else [int(v) for v in np.asarray(tensor.value).reshape(-1)]


def _reshape(ev, value, inputs, attrs):
    shape = _ints(inputs[1])
    if not attrs.get("allowzero", 0):
        shape = [value.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    try:
        return value.reshape(shape)
    except ValueError as error:
        raise EvalError(f"Reshape: {error}") from None


def _axes(ev, inputs, attrs) -> list[int]:
    found = _ints(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else attrs.get("axes")
    return [int(a) for a in found or []]


def _unsqueeze(ev, value, inputs, attrs):
    axes = _axes(ev, inputs, attrs)
    rank = value.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        value = np.expand_dims(value, axis)
    return value


def _squeeze(ev, value, inputs, attrs):
    axes = _axes(ev, inputs, attrs)
    return np.squeeze(value, axis=tuple(a % value.ndim for a in axes) if axes else None)


HANDLERS["Reshape"] = _shaped(_reshape)
HANDLERS["Transpose"] = _shaped(lambda ev, v, i, a: np.transpose(v, a.get("perm")))
HANDLERS["Unsqueeze"] = _shaped(_unsqueeze)
HANDLERS["Squeeze"] = _shaped(_squeeze)
HANDLERS["Flatten"] = _shaped(
    lambda ev, v, i, a: (
        v.reshape(math.prod(v.shape[: a.get("axis", 1) % max(v.ndim, 1) or 0]), -1)
        if a.get("axis", 1) != 0
        else v.reshape(1, -1)
    )
)


@handles("Cast", "CastLike")
def _cast(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
    x = inputs[0]
    target = dtype_name(attrs["to"]) if node.op_type == "Cast" else inputs[1].dtype
    if target in FLOATS:
        value = round_to(np.asarray(x.value, dtype=np.float64), target)
    else:
        value = np.asarray(x.value).astype(target)
    return [Tensor(value, target, x.constant, x.mag)]


@handles("Constant")
def _constant(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
    if isinstance(attrs.get("value"), TensorProto):
        tensor = attrs["value"]
        check_size(math.prod(tensor.dims), f"Constant {node.output[0]!r}")
        return [as_tensor(ev.read_tensor(tensor), dtype_name(tensor.data_type), True)]
    for key, dtype in (("value_float", "float32"), ("value_floats", "float32")):
        if key in attrs:
            return [as_tensor(np.array(attrs[key], np.float32), dtype, True)]
    for key in ("value_int", "value_ints"):
        if key in attrs:
            return [as_tensor(np.array(attrs[key], np.int64), "int64", True)]
    raise EvalError("Constant without a value this evaluator reads")


@handles("Shape")
def _shape(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
    dims = np.array(inputs[0].value.shape, dtype=np.int64)[attrs.get("start", 0) : attrs.get("end")]
    return [Tensor(dims, "int64", True)]


@handles("Concat")
def _concat(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
    present = [t for t in inputs if t is not None]
    check_size(sum(t.value.size for t in present), "Concat output")
    axis = int(attrs.get("axis", 0))
    try:
        value = np.concatenate([t.value for t in present], axis=axis)
    except ValueError as error:
        raise EvalError(f"Concat: {error}") from None
    mag = None
    if ev.magnitudes and present[0].dtype in FLOATS:
        mag = np.concatenate(
            [np.broadcast_to(t.magnitude, t.value.shape) for t in present], axis=axis
        )
    return [output_tensor(value, present[0].dtype, inputs, mag)]


@handles("ConstantOfShape")
def _constant_of_shape(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
    dims = _ints(inputs[0]) or []
    if any(d < 0 for d in dims):
        raise EvalError("ConstantOfShape with a negative dimension")
    check_size(math.prod(dims), "ConstantOfShape output")
    value, dtype = np.zeros(1), "float32"
    if isinstance(attrs.get("value"), TensorProto):
        value, dtype = (
            ev.read_tensor(attrs["value"]).reshape(-1),
            dtype_name(attrs["value"].data_type),
        )
    return [Tensor(np.full(dims, value[0] if value.size else 0), dtype, True)]


@handles("Expand")
def _expand(ev: Evaluator, node, inputs, attrs) -> list[Tensor]:
    x, dims = inputs[0], _ints(inputs[1]) or []
    try:
        shape = np.broadcast_shapes(x.value.shape, tuple(dims))
    except ValueError as error:
        raise EvalError(f"Expand: {error}") from None
    check_size(math.prod(shape), "Expand output")
    mag = None if x.mag is None else np.broadcast_to(x.mag, shape)
    return [output_tensor(np.broadcast_to(x.value, shape).copy(), x.dtype, inputs, mag)]
