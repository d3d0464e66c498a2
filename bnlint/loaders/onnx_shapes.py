"""Shape and dtype information for an ONNX graph, computed only when a rule asks.

ONNX shape inference runs on a weightless copy of the model (large initializers become
typed inputs), so its cost does not grow with the weights. Results are keyed like the
ModelGraph's tensors: top-level names as they are, subgraph-body names as ``<path>::<name>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import onnx
from onnx import AttributeProto, GraphProto, ModelProto, TensorProto

from bnlint.loaders.onnx_types import dtype_name

_SMALL_INITIALIZER = 4096  # bytes of integer data kept so Reshape/Expand targets infer
Types = dict[str, tuple[tuple | None, str | None]]


def type_of(value: onnx.ValueInfoProto) -> tuple[tuple | None, str | None]:
    """(dims, dtype) of a value info; dims hold ints, symbolic names or None."""
    if not value.type.HasField("tensor_type"):
        return None, None
    tensor_type = value.type.tensor_type
    dtype = dtype_name(tensor_type.elem_type)
    if not tensor_type.HasField("shape"):
        return None, dtype
    dims = tuple(
        dim.dim_value if dim.HasField("dim_value") else (dim.dim_param or None)
        for dim in tensor_type.shape.dim
    )
    return dims, dtype


def apply_input_shapes(graph: GraphProto, input_shapes: Mapping[str, tuple[int, ...]]) -> None:
    """Overwrite declared input dims with ``--input-shape`` values (``""`` = first input)."""
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


def _weightless_copy(model: ModelProto) -> ModelProto:
    light = ModelProto(ir_version=model.ir_version, opset_import=model.opset_import)
    graph, source = light.graph, model.graph
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    declared = {value.name for value in source.input}
    for tensor in source.initializer:
        keep = (
            tensor.data_location != TensorProto.EXTERNAL
            and tensor.data_type in (TensorProto.INT64, TensorProto.INT32)
            and tensor.ByteSize() <= _SMALL_INITIALIZER
        )
        if keep:
            graph.initializer.append(tensor)
        elif tensor.name not in declared:
            graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    return light


def infer_types(
    model: ModelProto,
    input_shapes: Mapping[str, tuple[int, ...]],
    body_path: Callable[[str, onnx.NodeProto, int, AttributeProto, int], str],
) -> Types:
    """Every tensor's (shape, dtype) that ONNX shape inference can find.

    ``body_path`` names a subgraph body exactly as the graph builder does, so keys match.
    """
    light = _weightless_copy(model)
    apply_input_shapes(light.graph, input_shapes)
    try:
        graph = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True).graph
    except Exception:
        # Inference is a convenience: a graph it cannot type is still linted without shapes.
        graph = light.graph
    types: Types = {}
    _collect(graph, "", types, body_path)
    return types


def _collect(graph: GraphProto, path: str, types: Types, body_path) -> None:
    for value in (*graph.input, *graph.value_info, *graph.output):
        key = f"{path}::{value.name}" if path else value.name
        types.setdefault(key, type_of(value))
    for index, node in enumerate(graph.node):
        for attribute in node.attribute:
            bodies = (
                [attribute.g]
                if attribute.type == AttributeProto.GRAPH
                else list(attribute.graphs)
                if attribute.type == AttributeProto.GRAPHS
                else []
            )
            for number, body in enumerate(bodies):
                _collect(body, body_path(path, node, index, attribute, number), types, body_path)
