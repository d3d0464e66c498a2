"""Evaluate the constant plumbing exporters put in front of parameters.

torch's dynamo exporter builds a bias-free Conv's zero bias at run time
(Shape -> Gather -> ... -> Expand -> CastLike); older graphs route weights through
Identity, Cast or Constant nodes. Evaluating such nodes with NumPy lets rules see a
parameter instead of plumbing. Only small, side-effect-free ops are evaluated, and only
when every input is already known; anything else stays a node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

MAX_FOLD_BYTES = 1 << 20  # never materialise large tensors just to fold plumbing

Evaluator = Callable[[list[np.ndarray], dict[str, Any], int], list[np.ndarray]]


def _axes(inputs: list[np.ndarray], attrs: dict[str, Any], index: int) -> list[int] | None:
    if len(inputs) > index and inputs[index] is not None:
        return [int(a) for a in np.asarray(inputs[index]).reshape(-1)]
    value = attrs.get("axes")
    return None if value is None else [int(a) for a in value]


def _unsqueeze(inputs, attrs, opset):
    data = inputs[0]
    axes = _axes(inputs, attrs, 1) or []
    rank = data.ndim + len(axes)
    for axis in sorted(a % rank for a in axes):
        data = np.expand_dims(data, axis)
    return [data]


def _squeeze(inputs, attrs, opset):
    axes = _axes(inputs, attrs, 1)
    data = inputs[0]
    if axes is None:
        return [np.squeeze(data)]
    return [np.squeeze(data, axis=tuple(a % data.ndim for a in axes))]


def _shape(inputs, attrs, opset):
    dims = np.array(inputs[0].shape, dtype=np.int64)
    start, end = attrs.get("start", 0), attrs.get("end")
    return [dims[start:end]]


def _gather(inputs, attrs, opset):
    data, indices = inputs[0], inputs[1].astype(np.int64)
    axis = attrs.get("axis", 0) % max(data.ndim, 1)
    return [np.take(data, indices, axis=axis)]


def _reshape(inputs, attrs, opset):
    data, shape = inputs[0], [int(d) for d in inputs[1].reshape(-1)]
    if not attrs.get("allowzero", 0):
        shape = [data.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return [data.reshape(shape)]


def _slice(inputs, attrs, opset):
    data = inputs[0]
    if opset < 10:
        starts, ends = attrs["starts"], attrs["ends"]
        axes = attrs.get("axes", list(range(len(starts))))
        steps = [1] * len(starts)
    else:
        starts, ends = inputs[1].tolist(), inputs[2].tolist()
        axes = inputs[3].tolist() if len(inputs) > 3 and inputs[3] is not None else None
        axes = axes if axes is not None else list(range(len(starts)))
        steps = (
            inputs[4].tolist() if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
        )
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=False):
        index[axis % data.ndim] = slice(int(start), int(end), int(step))
    return [data[tuple(index)]]


def _target_shape(shape: np.ndarray, itemsize: int) -> list[int]:
    dims = [int(d) for d in shape.reshape(-1)]
    if any(d < 0 for d in dims) or int(np.prod(dims, dtype=object)) * itemsize > MAX_FOLD_BYTES:
        raise ValueError("target shape too large to fold")
    return dims


def _constant_of_shape(inputs, attrs, opset):
    value = attrs.get("value")
    fill = value.reshape(-1)[0] if isinstance(value, np.ndarray) else np.float32(0)
    dtype = np.asarray(fill).dtype
    return [np.full(_target_shape(inputs[0], dtype.itemsize), fill, dtype=dtype)]


def _expand(inputs, attrs, opset):
    data = inputs[0]
    dims = _target_shape(inputs[1], data.dtype.itemsize)
    return [data * np.ones(dims, dtype=data.dtype)]


def _cast(inputs, attrs, opset):
    from bnlint.onnx.elem_types import numpy_dtype

    dtype = numpy_dtype(attrs["to"])
    if dtype is None:
        raise ValueError("unsupported cast target")
    return [inputs[0].astype(dtype)]


def _binary(function: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Evaluator:
    def evaluate(inputs, attrs, opset):
        result = function(inputs[0], inputs[1])
        return [np.asarray(result).astype(np.result_type(inputs[0], inputs[1]))]

    return evaluate


def _unary(function: Callable[[np.ndarray], np.ndarray]) -> Evaluator:
    def evaluate(inputs, attrs, opset):
        return [np.asarray(function(inputs[0])).astype(inputs[0].dtype)]

    return evaluate


EVALUATORS: dict[str, Evaluator] = {
    "Identity": lambda inputs, attrs, opset: [inputs[0]],
    "Cast": _cast,
    "CastLike": lambda inputs, attrs, opset: [inputs[0].astype(inputs[1].dtype)],
    "Shape": _shape,
    "Size": lambda inputs, attrs, opset: [np.array(inputs[0].size, dtype=np.int64)],
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda inputs, attrs, opset: [np.concatenate(inputs, axis=attrs.get("axis", 0))],
    "Reshape": _reshape,
    "Flatten": lambda inputs, attrs, opset: [
        inputs[0].reshape(int(np.prod(inputs[0].shape[: attrs.get("axis", 1)])), -1)
    ],
    "Expand": _expand,
    "ConstantOfShape": _constant_of_shape,
    "Transpose": lambda inputs, attrs, opset: [np.transpose(inputs[0], attrs.get("perm"))],
    "Slice": _slice,
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(lambda a, b: a / b if a.dtype.kind == "f" else a // b),
    "Pow": _binary(np.power),
    "Neg": _unary(np.negative),
    "Sqrt": _unary(np.sqrt),
    "Reciprocal": _unary(np.reciprocal),
}
# Ops whose result depends only on the input's shape, not its values.
SHAPE_ONLY = frozenset({"Shape", "Size"})


# An evaluator given hostile values fails with one of these; the node then stays a node.
_EVALUATION_ERRORS = (
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    OverflowError,
    MemoryError,
)


_BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Pow"})


def _result_bytes(op_type: str, inputs: Sequence[Any], attrs: dict[str, Any]) -> int:
    """An upper bound of the output size for the ops whose output can outgrow their inputs.

    The loader uses it to keep plumbing evaluation cheap; the audit (which must evaluate a
    peer tool's arithmetic on full weights) calls the evaluators directly.
    """
    if op_type in _BINARY and len(inputs) == 2:
        shape = np.broadcast_shapes(np.shape(inputs[0]), np.shape(inputs[1]))
        itemsize = np.result_type(inputs[0], inputs[1]).itemsize
        return int(np.prod(shape, dtype=object)) * itemsize
    if op_type == "Concat":  # the sum of its inputs: a node may list one input many times
        return sum(np.asarray(item).nbytes for item in inputs if item is not None)
    if op_type == "Expand" and len(inputs) == 2:  # broadcasts both ways, not just to the shape
        dims = [int(d) for d in np.asarray(inputs[1]).reshape(-1)[:64]]
        if len(np.asarray(inputs[1]).reshape(-1)) > 64 or any(d < 0 for d in dims):
            return MAX_FOLD_BYTES + 1
        shape = np.broadcast_shapes(np.shape(inputs[0]), tuple(dims))
        return int(np.prod(shape, dtype=object)) * np.asarray(inputs[0]).dtype.itemsize
    if op_type == "ConstantOfShape" and inputs:
        dims = np.asarray(inputs[0]).reshape(-1)
        if dims.size > 64 or any(int(d) < 0 for d in dims):
            return MAX_FOLD_BYTES + 1
        return int(np.prod([int(d) for d in dims], dtype=object)) * 8
    if op_type in ("Cast", "CastLike") and inputs:  # up to 8 bytes per element
        return int(np.asarray(inputs[0]).size) * 8
    if op_type == "Gather" and len(inputs) == 2:
        data, indices = np.asarray(inputs[0]), np.asarray(inputs[1])
        axis = attrs.get("axis", 0) % max(data.ndim, 1)
        rows = int(np.prod(data.shape[:axis] + data.shape[axis + 1 :], dtype=object))
        return rows * indices.size * data.dtype.itemsize
    return 0


def evaluate(
    op_type: str, inputs: Sequence[np.ndarray | None], attrs: dict[str, Any], opset: int
) -> list[np.ndarray] | None:
    """The outputs of ``op_type`` on constant ``inputs``, or None if it cannot be folded."""
    evaluator = EVALUATORS.get(op_type)
    if evaluator is None:
        return None
    try:
        if _result_bytes(op_type, inputs, attrs) > MAX_FOLD_BYTES:
            return None  # refused before allocating: plumbing constants are small
        with np.errstate(all="ignore"):
            outputs = evaluator(list(inputs), attrs, opset)
    except _EVALUATION_ERRORS:
        return None
    if any(np.asarray(output).nbytes > MAX_FOLD_BYTES for output in outputs):
        return None
    return [np.asarray(output) for output in outputs]
