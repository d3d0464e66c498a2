"""ONNX attribute and tensor values as Python/NumPy values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from onnx import AttributeProto, NodeProto, TensorProto, numpy_helper

from bnlint.graph import UnreadableParameter
from bnlint.loaders.onnx_const import MAX_FOLD_BYTES
from bnlint.loaders.onnx_types import dtype_name, numpy_dtype


def attributes(node: NodeProto) -> dict[str, Any]:
    """Scalar, list, string and small tensor attributes (graphs are handled by the builder)."""
    values: dict[str, Any] = {}
    for attribute in node.attribute:
        kind = attribute.type
        if kind == AttributeProto.FLOAT:
            values[attribute.name] = attribute.f
        elif kind == AttributeProto.INT:
            values[attribute.name] = attribute.i
        elif kind == AttributeProto.STRING:
            values[attribute.name] = attribute.s.decode("utf-8", "replace")
        elif kind == AttributeProto.FLOATS:
            values[attribute.name] = list(attribute.floats)
        elif kind == AttributeProto.INTS:
            values[attribute.name] = list(attribute.ints)
        elif kind == AttributeProto.STRINGS:
            values[attribute.name] = [s.decode("utf-8", "replace") for s in attribute.strings]
        elif kind == AttributeProto.TENSOR and attribute.t.ByteSize() <= MAX_FOLD_BYTES:
            values[attribute.name] = tensor_value(attribute.t)
    return values


def constant_value(node: NodeProto) -> np.ndarray | None:
    """The value of a Constant node in any of its spellings."""
    attrs = attributes(node)
    if isinstance(attrs.get("value"), np.ndarray):
        return attrs["value"]
    for key, dtype in (
        ("value_float", np.float32),
        ("value_int", np.int64),
        ("value_floats", np.float32),
        ("value_ints", np.int64),
    ):
        if key in attrs:
            return np.array(attrs[key], dtype=dtype)
    return None


def tensor_value(tensor: TensorProto) -> np.ndarray | None:
    """A small embedded tensor's value, or None if it cannot be read."""
    try:
        return read_embedded(tensor)
    except UnreadableParameter:
        return None


def describe(tensor: TensorProto) -> tuple[tuple[int, ...], str | None]:
    return tuple(tensor.dims), dtype_name(tensor.data_type)


def read_embedded(tensor: TensorProto) -> np.ndarray:
    """An embedded initializer as an array; checks its declared size before allocating."""
    dims = tuple(tensor.dims)
    if any(d < 0 for d in dims):
        raise UnreadableParameter(tensor.name, f"negative dimension in {dims}")
    if tensor.data_location == TensorProto.EXTERNAL:
        raise UnreadableParameter(tensor.name, "external data was not resolved")
    dtype = numpy_dtype(tensor.data_type)
    if tensor.raw_data and (dtype is not None or tensor.data_type == TensorProto.BFLOAT16):
        itemsize = 2 if dtype is None else dtype.itemsize
        expected = math.prod(dims) * itemsize
        if expected != len(tensor.raw_data):
            raise UnreadableParameter(
                tensor.name,
                f"declares {dims} ({expected} bytes) but holds {len(tensor.raw_data)} bytes",
            )
    try:
        if tensor.data_type == TensorProto.BFLOAT16:
            return _bfloat16_to_float32(tensor)
        return numpy_helper.to_array(tensor)
    except Exception as error:
        raise UnreadableParameter(tensor.name, f"cannot be decoded: {error}") from None


def _bfloat16_to_float32(tensor: TensorProto) -> np.ndarray:
    if tensor.raw_data:
        bits = np.frombuffer(tensor.raw_data, dtype="<u2")
    else:
        bits = np.asarray(tensor.int32_data, dtype=np.uint32).astype(np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32).reshape(tuple(tensor.dims))
