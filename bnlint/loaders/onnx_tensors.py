"""ONNX attribute and tensor values as Python/NumPy values."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from onnx import AttributeProto, NodeProto, TensorProto, numpy_helper

from bnlint.graph import UnreadableParameter
from bnlint.loaders.onnx_const import MAX_FOLD_BYTES
from bnlint.loaders.onnx_file import MappedTensor
from bnlint.onnx.elem_types import dtype_name, numpy_dtype

if TYPE_CHECKING:
    from collections.abc import Callable

    from bnlint.loaders.external import ExternalRef


_GRAPH_KINDS = (AttributeProto.GRAPH, AttributeProto.GRAPHS)


def attributes(node: NodeProto) -> dict[str, Any]:
    """Scalar, list, string and small tensor attributes (graphs are handled by the builder)."""
    return read_attributes(node.attribute)[0]


def read_attributes(protos: Any) -> tuple[dict[str, Any], bool]:
    """(the values of :func:`attributes`, whether any attribute holds a graph body)."""
    values: dict[str, Any] = {}
    bodies = False
    for attribute in protos:
        kind = attribute.type
        if kind in _GRAPH_KINDS:
            bodies = True
        elif kind == AttributeProto.FLOAT:
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
    return values, bodies


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


def describe(record: TensorProto | MappedTensor) -> tuple[tuple[int, ...], str | None]:
    tensor = record.tensor if type(record) is MappedTensor else record
    return tuple(tensor.dims), dtype_name(tensor.data_type)


def read_embedded(record: TensorProto | MappedTensor) -> np.ndarray:
    """An embedded initializer as an array; checks its declared size before allocating.

    Raw little-endian data of a NumPy dtype is viewed in place (``np.frombuffer``, read
    only): in the memory-mapped file when its byte range is known, else in the bytes
    protobuf returns; every other encoding goes through ``onnx.numpy_helper``.
    """
    if type(record) is MappedTensor:
        return _read_mapped(record)
    tensor = record
    dims = tuple(tensor.dims)
    if any(d < 0 for d in dims):
        raise UnreadableParameter(tensor.name, f"negative dimension in {dims}")
    if tensor.data_location == TensorProto.EXTERNAL:
        raise UnreadableParameter(tensor.name, "external data was not resolved")
    data_type = tensor.data_type
    dtype = numpy_dtype(data_type)
    raw = tensor.raw_data
    if raw and (dtype is not None or data_type == TensorProto.BFLOAT16):
        itemsize = 2 if dtype is None else dtype.itemsize
        expected = math.prod(dims) * itemsize
        if expected != len(raw):
            raise UnreadableParameter(
                tensor.name,
                f"declares {dims} ({expected} bytes) but holds {len(raw)} bytes",
            )
        if dtype is not None and dtype.kind in "fiubc":
            return np.frombuffer(raw, dtype=dtype).reshape(dims)
    try:
        if data_type == TensorProto.BFLOAT16:
            return _bfloat16_to_float32(tensor)
        return numpy_helper.to_array(tensor)
    except Exception as error:
        raise UnreadableParameter(tensor.name, f"cannot be decoded: {error}") from None


def _read_mapped(record: MappedTensor) -> np.ndarray:
    tensor = record.tensor
    dtype = numpy_dtype(tensor.data_type)
    if dtype is None or dtype.kind not in "fiubc":
        return read_embedded(tensor)
    dims = tuple(tensor.dims)
    if any(d < 0 for d in dims):
        raise UnreadableParameter(tensor.name, f"negative dimension in {dims}")
    expected = math.prod(dims) * dtype.itemsize
    if expected != record.length:
        raise UnreadableParameter(
            tensor.name, f"declares {dims} ({expected} bytes) but holds {record.length} bytes"
        )
    count = record.length // dtype.itemsize
    return np.frombuffer(record.buffer, dtype=dtype, count=count, offset=record.offset).reshape(
        dims
    )


def external_rows(
    ref: ExternalRef, dtype: np.dtype, shape: tuple[int, ...]
) -> Callable[[int, int], np.ndarray]:
    """A reader of rows ``[start, stop)`` of an external tensor (axis 0), each call reading
    only those bytes into a fresh array: large tensors are reduced block by block."""
    row_bytes = math.prod(shape[1:]) * dtype.itemsize

    def rows(start: int, stop: int) -> np.ndarray:
        block = np.empty((stop - start, *shape[1:]), dtype=dtype)
        with open(ref.file, "rb") as handle:
            handle.seek(ref.offset + start * row_bytes)
            view = memoryview(block).cast("B")
            if handle.readinto(view) != block.nbytes:
                raise UnreadableParameter(str(ref.file), "external data ended early")
        return block

    return rows


def _bfloat16_to_float32(tensor: TensorProto) -> np.ndarray:
    if tensor.raw_data:
        bits = np.frombuffer(tensor.raw_data, dtype="<u2")
    else:
        bits = np.asarray(tensor.int32_data, dtype=np.uint32).astype(np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32).reshape(tuple(tensor.dims))


_RAW_FLOATS = {1: "<f4", 10: "<f2", 11: "<f8"}  # ONNX float, float16, double
_ITEMSIZE = {"<f4": 4, "<f2": 2, "<f8": 8}


def raw_floats(
    source: TensorProto | MappedTensor, max_elements: int
) -> tuple[str, Any, int] | None:
    """A float initializer's raw little-endian bytes, when that is all it holds and they
    match its declared shape (anything else takes the careful path)."""
    mapped = type(source) is MappedTensor
    tensor = source.tensor if mapped else source
    dtype = _RAW_FLOATS.get(getattr(tensor, "data_type", None))
    if dtype is None:
        return None
    dims = tensor.dims
    elements = math.prod(dims)
    if elements > max_elements or any(d < 0 for d in dims):
        return None
    itemsize = _ITEMSIZE[dtype]
    if mapped:
        if source.length != elements * itemsize:
            return None
        raw = source.buffer[source.offset : source.offset + source.length]
    else:
        if tensor.data_location != 0:
            return None
        raw = tensor.raw_data
        if len(raw) != elements * itemsize:
            return None
    if not raw and elements:
        return None
    return dtype, raw, elements
