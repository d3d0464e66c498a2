"""Shape and dtype information for an ONNX graph, computed only when a rule asks.

ONNX shape inference runs on a weightless copy of the model: every initializer becomes a
typed graph input (small integer ones keep their values so Reshape/Expand targets
infer), so its cost does not grow with the weights. The copy is assembled as protobuf
bytes (one cached type encoding per distinct dtype and shape), never as 60,000 Python
messages. Data propagation runs only when some op's inference can use it.
Results are keyed like the ModelGraph's tensors: top-level names as they are,
subgraph-body names as ``<path>::<name>``, and decoded one name at a time on demand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from typing import Any

import onnx
from onnx import AttributeProto, GraphProto, ModelProto, TensorProto

from bnlint.loaders.onnx_bounded import (
    InferenceStopped,
    data_propagation_problem,
    infer_bounded,
    inference_problems,
)
from bnlint.onnx.elem_types import dtype_name

_SMALL_INITIALIZER = 4096  # bytes of integer data kept so Reshape/Expand targets infer
_INTEGER_TYPES = (TensorProto.INT64, TensorProto.INT32)
# Ops whose shape inference reads no input's values: in a graph made only of these, data
# propagation (which feeds computed shapes to Reshape, Expand, Slice …) changes nothing.
_NO_DATA_OPS = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "BatchNormalization",
        "InstanceNormalization",
        "LayerNormalization",
        "GroupNormalization",
        "Gemm",
        "MatMul",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Sum",
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Elu",
        "Selu",
        "Celu",
        "Gelu",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Softplus",
        "Softsign",
        "Mish",
        "Clip",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "LpPool",
        "Dropout",
        "Identity",
        "Cast",
        "Flatten",
        "Transpose",
        "Concat",
        "Softmax",
        "LogSoftmax",
    }
)
TypeInfo = tuple[tuple | None, str | None]
Types = dict[str, TypeInfo]


def type_of(value: onnx.ValueInfoProto) -> TypeInfo:
    """(dims, dtype) of a value info; dims hold ints, symbolic names or None."""
    value_type = value.type
    if not value_type.HasField("tensor_type"):
        return None, None
    tensor_type = value_type.tensor_type
    dtype = dtype_name(tensor_type.elem_type)
    if not tensor_type.HasField("shape"):
        return None, dtype
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        size = dim.dim_value
        if size or dim.HasField("dim_value"):
            dims.append(size)
        else:
            dims.append(dim.dim_param or None)
    return tuple(dims), dtype


def apply_input_shapes(graph: GraphProto, input_shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Overwrite declared input dims with ``--input-shape`` values (``""`` = first input)."""
    if not input_shapes:
        return
    initializers = {tensor.name for tensor in graph.initializer}
    real_inputs = [value for value in graph.input if value.name not in initializers]
    for name, dims in input_shapes.items():
        target = next((v for v in real_inputs if v.name == name), None)
        if target is None and not name and real_inputs:
            target = real_inputs[0]
        if target is None or not target.type.HasField("tensor_type"):
            continue
        shape = target.type.tensor_type.shape
        shape.ClearField("dim")
        for size in dims:
            shape.dim.add().dim_value = size


# -- the weightless copy, as protobuf bytes -----------------------------------------------
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 fields encode negative values in ten bytes
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return tag + _varint(len(payload)) + payload


_TYPE_CACHE: dict[tuple[int, ...], bytes] = {}  # (elem_type, *dims) -> encoded type
_SMALL_LENGTHS = [bytes((n,)) for n in range(128)]


def _type_bytes(elem_type: int, dims: tuple[int, ...]) -> bytes:
    """``ValueInfoProto.type`` (field 2) for a tensor of ``elem_type`` and ``dims``."""
    key = (elem_type, *dims)
    cached = _TYPE_CACHE.get(key)
    if cached is None:
        shape = b"".join(_field(b"\x0a", b"\x08" + _varint(d)) for d in dims)  # dim.dim_value
        tensor = b"\x08" + _varint(elem_type) + _field(b"\x12", shape)  # elem_type, shape
        cached = _TYPE_CACHE[key] = _field(b"\x12", _field(b"\x0a", tensor))  # type.tensor_type
        if len(_TYPE_CACHE) > 4096:
            _TYPE_CACHE.clear()
    return cached


def weightless_bytes(model: ModelProto) -> bytes:
    """The serialized model with each initializer turned into a typed graph input.

    Graph inputs are appended as a second occurrence of ``ModelProto.graph`` (field 7),
    which protobuf merges into the first: repeated ``GraphProto.input`` entries (field 11)
    are concatenated.
    """
    source = model.graph
    light = ModelProto(ir_version=model.ir_version, opset_import=model.opset_import)
    graph = light.graph
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    declared = {value.name for value in source.input}
    entries = []
    append = entries.append
    cache, small = _TYPE_CACHE, _SMALL_LENGTHS
    for tensor in source.initializer:
        elem_type = tensor.data_type
        if (
            elem_type in _INTEGER_TYPES
            and tensor.data_location != TensorProto.EXTERNAL
            and tensor.ByteSize() <= _SMALL_INITIALIZER
        ):
            graph.initializer.append(tensor)
            continue
        name = tensor.name
        if name in declared:
            continue
        key = (elem_type, *tensor.dims)
        type_bytes = cache.get(key)
        if type_bytes is None:
            type_bytes = _type_bytes(elem_type, key[1:])
        encoded = name.encode("utf-8")
        size = len(encoded)
        value_info = b"".join(
            (b"\x0a", small[size] if size < 128 else _varint(size), encoded, type_bytes)
        )
        size = len(value_info)
        append(b"\x5a" + (small[size] if size < 128 else _varint(size)) + value_info)
    serialized = light.SerializeToString()
    if entries:
        serialized += _field(b"\x3a", b"".join(entries))  # ModelProto.graph, merged
    return serialized


def _with_input_shapes(serialized: bytes, input_shapes: Mapping[str, tuple[int, ...]]) -> bytes:
    if not input_shapes:
        return serialized
    model = ModelProto.FromString(serialized)
    apply_input_shapes(model.graph, input_shapes)
    return model.SerializeToString()


def needs_data_prop(op_types: Iterable[tuple[str, str]]) -> bool:
    """False when no node's shape inference reads another tensor's values, given every
    (domain, op type) of the graph: data propagation then changes no result and is
    skipped (it costs a third of the inference time)."""
    return any(op not in _NO_DATA_OPS or domain not in ("", "ai.onnx") for domain, op in op_types)


def _all_nodes(graph: GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for body in attribute.graphs:
                    yield from _all_nodes(body)


class InferredTypes(Mapping[str, TypeInfo]):
    """name -> (shape, dtype) of an inferred graph, each decoded on first lookup."""

    def __init__(
        self, graph: GraphProto, body_path: Callable[..., str] | None, declared_inputs: int
    ) -> None:
        self._graph = graph  # keeps the value infos alive
        self._values: dict[str, Any] = {}
        self._decoded: Types = {}
        _index(graph, "", self._values, body_path, declared_inputs)

    def __getitem__(self, key: str) -> TypeInfo:
        found = self._decoded.get(key)
        if found is None:
            found = self._decoded[key] = type_of(self._values[key])
        return found

    def get(self, key: str, default: Any = None) -> Any:
        found = self._decoded.get(key)
        if found is not None:
            return found
        value = self._values.get(key)
        if value is None:
            return default
        found = self._decoded[key] = type_of(value)
        return found

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def infer_types(
    model: ModelProto,
    input_shapes: Mapping[str, tuple[int, ...]],
    body_path: Callable[[str, onnx.NodeProto, int, AttributeProto, int], str],
    *,
    data_prop: bool | None = None,
    has_bodies: bool = True,
    op_types: Set[tuple[str, str]] | None = None,
    notes: list[str] | None = None,
) -> InferredTypes:
    """Every tensor's (shape, dtype) that ONNX shape inference can find.

    ``body_path`` names a subgraph body exactly as the graph builder does, so keys match.
    ``data_prop`` defaults to whether any node's inference could use propagated data;
    ``has_bodies=False`` (no If/Loop/Scan) skips looking for subgraph value infos.
    Inference runs bounded (:mod:`bnlint.loaders.onnx_bounded`); what it skipped or could
    not finish is appended to ``notes`` (the graph's partial-read facts, so BN901).
    """
    notes = notes if notes is not None else []
    if op_types is None:
        op_types = {(node.domain, node.op_type) for node in _all_nodes(model.graph)}
    if data_prop is None:
        data_prop = needs_data_prop(op_types)
    serialized = _with_input_shapes(weightless_bytes(model), input_shapes)
    problems = inference_problems(model) if ("", "Einsum") in op_types else []
    if problems:
        notes.append(f"shape inference skipped: {problems[0]}")
        graph = ModelProto.FromString(serialized).graph
    else:
        if data_prop and (why := data_propagation_problem(model, op_types, has_bodies)):
            notes.append(why)
            data_prop = False
        graph = _inferred_graph(serialized, bool(data_prop), notes)
    # Inputs past the declared ones are the initializers typed above: parameters, whose
    # shapes the ModelGraph has already.
    return InferredTypes(graph, body_path if has_bodies else None, len(model.graph.input))


def _inferred_graph(serialized: bytes, data_prop: bool, notes: list[str]) -> GraphProto:
    """The inferred graph; without data propagation if that did not finish; else as given."""
    for attempt in (data_prop, False) if data_prop else (False,):
        try:
            return ModelProto.FromString(infer_bounded(serialized, attempt)).graph
        except InferenceStopped as stopped:
            what = "with data propagation " if attempt else ""
            notes.append(f"shape inference {what}{stopped}")
        except Exception:
            break  # Inference is a convenience: a graph it cannot type is linted without shapes
    return ModelProto.FromString(serialized).graph


def _index(
    graph: GraphProto, path: str, values: dict[str, Any], body_path, inputs: int | None = None
) -> None:
    """Value infos by key; inputs win over value infos, which win over outputs."""
    prefix = f"{path}::" if path else ""
    declared = graph.input if inputs is None else list(graph.input)[:inputs]
    for group in (graph.output, graph.value_info, declared):
        for value in reversed(list(group)):  # the first of duplicate names wins
            values[prefix + value.name] = value
    if body_path is None:
        return
    for index, node in enumerate(graph.node):
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                bodies = [attribute.g]
            elif attribute.type == AttributeProto.GRAPHS:
                bodies = list(attribute.graphs)
            else:
                continue
            for number, body in enumerate(bodies):
                _index(body, body_path(path, node, index, attribute, number), values, body_path)
