"""ONNX front end: a ModelProto (opset 1 to newest) into a ModelGraph.

The file is parsed without its external data; shapes come from ONNX shape inference run
on a weightless copy; parameters are registered lazily (external data memory-mapped after
validation); If/Loop/Scan bodies are flattened into the same graph; constant plumbing
feeding parameters is evaluated (see ``onnx_const``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, numpy_helper

from bnlint.graph import BatchSize, GraphFacts, Location, ModelGraph
from bnlint.loaders import LoadError
from bnlint.loaders.external import ExternalDataResolver, lazy_reader
from bnlint.loaders.onnx_const import EVALUATORS, MAX_FOLD_BYTES, SHAPE_ONLY, evaluate
from bnlint.loaders.onnx_ops import STANDARD_DOMAINS, canonical_op, normalize
from bnlint.loaders.onnx_scope import Scope, exporter_metadata, legacy_module_path
from bnlint.loaders.onnx_types import dtype_name, numpy_dtype, numpy_dtype_by_name

_SMALL_INITIALIZER = 4096  # bytes kept in the weightless copy so Reshape targets infer


def parse(path: Path) -> ModelProto:
    """Parse an ONNX file (binary protobuf, or ONNX text for ``.onnxtxt``)."""
    try:
        if path.suffix == ".onnxtxt":
            return onnx.parser.parse_model(path.read_text(encoding="utf-8"))
        model = onnx.load_model(str(path), load_external_data=False)
    except DecodeError:
        problem = "not a valid ONNX model: protobuf parse error (truncated or corrupt)"
        raise LoadError(path, problem) from None
    except (UnicodeDecodeError, onnx.parser.ParseError) as error:
        raise LoadError(path, f"not a valid ONNX text model: {error}") from None
    except (OSError, RuntimeError, ValueError) as error:
        raise LoadError(path, f"cannot read ONNX model: {error}") from None
    if not model.HasField("graph") or (model.ir_version == 0 and not model.opset_import):
        raise LoadError(path, "not an ONNX model (no graph, no IR version)")
    return model


def load(path: Path, settings: Any) -> ModelGraph:
    return build_graph(parse(path), path, settings)


def build_graph(model: ModelProto, path: Path, settings: Any) -> ModelGraph:
    """A ModelGraph from an in-memory ModelProto (used by the file loader and the API)."""
    if model.functions:
        model = _inline_functions(model, path)
    return _Builder(model, path, settings).build()


def _inline_functions(model: ModelProto, path: Path) -> ModelProto:
    try:
        from onnx import inliner

        return inliner.inline_local_functions(model)
    except Exception as error:  # a malformed function must not stop the lint
        raise LoadError(path, f"cannot inline model-local functions: {error}") from None


def _count_nodes(graph: GraphProto, depth: int, max_depth: int, path: Path) -> int:
    if depth > max_depth:
        raise LoadError(path, f"subgraph nesting deeper than {max_depth} levels")
    total = len(graph.node)
    for node in graph.node:
        for attribute in node.attribute:
            for body in _bodies(attribute):
                total += _count_nodes(body, depth + 1, max_depth, path)
    return total


def _bodies(attribute: AttributeProto) -> list[GraphProto]:
    if attribute.type == AttributeProto.GRAPH:
        return [attribute.g]
    if attribute.type == AttributeProto.GRAPHS:
        return list(attribute.graphs)
    return []


def _weightless_copy(model: ModelProto) -> ModelProto:
    """The model without large initializer data, for cheap shape inference."""
    light = ModelProto(ir_version=model.ir_version, opset_import=model.opset_import)
    graph, source = light.graph, model.graph
    graph.node.extend(source.node)
    graph.input.extend(source.input)
    graph.output.extend(source.output)
    graph.value_info.extend(source.value_info)
    declared = {value.name for value in source.input}
    for tensor in source.initializer:
        small = (
            tensor.data_location != TensorProto.EXTERNAL and tensor.ByteSize() <= _SMALL_INITIALIZER
        )
        if small:
            graph.initializer.append(tensor)
        elif tensor.name not in declared:
            graph.input.append(
                onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims))
            )
    return light


def _infer(model: ModelProto, input_shapes: dict[str, tuple[int, ...]]) -> GraphProto:
    light = _weightless_copy(model)
    _apply_input_shapes(light.graph, input_shapes)
    try:
        return onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True).graph
    except Exception:
        # Inference is a convenience: a graph it cannot type is still linted without shapes.
        return light.graph


def _apply_input_shapes(graph: GraphProto, input_shapes: dict[str, tuple[int, ...]]) -> None:
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


def _type_of(value: onnx.ValueInfoProto) -> tuple[tuple | None, str | None]:
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


def _attributes(node: NodeProto) -> dict[str, Any]:
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
            values[attribute.name] = _tensor_value(attribute.t)
    return values


def _tensor_value(tensor: TensorProto) -> np.ndarray | None:
    if tensor.data_location == TensorProto.EXTERNAL:
        return None
    try:
        if tensor.data_type == TensorProto.BFLOAT16:
            return _bfloat16_to_float32(tensor)
        return numpy_helper.to_array(tensor)
    except Exception:
        return None


def _bfloat16_to_float32(tensor: TensorProto) -> np.ndarray:
    if tensor.raw_data:
        bits = np.frombuffer(tensor.raw_data, dtype="<u2")
    else:
        bits = np.asarray(tensor.int32_data, dtype=np.uint32).astype(np.uint16)
    return (bits.astype(np.uint32) << 16).view(np.float32).reshape(tuple(tensor.dims))


class _Builder:
    def __init__(self, model: ModelProto, path: Path, settings: Any) -> None:
        self.model = model
        self.path = path
        self.settings = settings
        self.opset = next(
            (op.version for op in model.opset_import if op.domain in ("", "ai.onnx")), 0
        ) or (1 if model.ir_version < 3 else 0)
        producer = f"{model.producer_name} {model.producer_version}".strip() or None
        facts = GraphFacts(
            format="onnx", opset=self.opset, producer=producer, ir_version=model.ir_version
        )
        self.graph = ModelGraph(path, facts)
        self.from_torch = model.producer_name == "pytorch"
        self.resolver = ExternalDataResolver(path, getattr(settings, "allowed_data_roots", ()))
        self.max_depth = getattr(settings, "max_subgraph_depth", 32)

    def build(self) -> ModelGraph:
        max_nodes = getattr(self.settings, "max_nodes", 2_000_000)
        total = _count_nodes(self.model.graph, 0, self.max_depth, self.path)
        if total > max_nodes:
            raise LoadError(self.path, f"{total} nodes exceed the limit of {max_nodes} (max-nodes)")
        self.input_shapes = dict(getattr(self.settings, "input_shapes", {}) or {})
        typed = _infer(self.model, self.input_shapes)
        self._graph(typed, self.model.graph.initializer, Scope(None, ""), top=True)
        self._record_batch_sizes()
        return self.graph.finalize()

    # -- parameters ----------------------------------------------------------------
    def _add_initializer(self, tensor: TensorProto, key: str) -> None:
        dims = tuple(int(d) for d in tensor.dims)
        record = self.graph.tensor(key)
        record.shape, record.dtype, record.is_param = dims, dtype_name(tensor.data_type), True
        if tensor.data_location == TensorProto.EXTERNAL:
            dtype = numpy_dtype(tensor.data_type)
            if dtype is None:
                self.graph.facts.partial.append(
                    f"external tensor {tensor.name!r} of unsupported type"
                )
                return
            entries = {entry.key: entry.value for entry in tensor.external_data}
            nbytes = int(np.prod(dims, dtype=object)) * dtype.itemsize
            ref = self.resolver.resolve(tensor.name, entries, nbytes)
            self.graph.params.add(key, lazy_reader(ref, dtype, dims), shape=dims, dtype=dtype.name)
            return
        self._check_declared_size(tensor, dims)
        self.graph.params.add(
            key, lambda t=tensor: self._materialise(t), shape=dims, dtype=record.dtype
        )

    def _check_declared_size(self, tensor: TensorProto, dims: tuple[int, ...]) -> None:
        dtype = numpy_dtype(tensor.data_type)
        if any(d < 0 for d in dims):
            raise LoadError(self.path, f"tensor {tensor.name!r} has a negative dimension {dims}")
        if dtype is not None and tensor.raw_data:
            expected = int(np.prod(dims, dtype=object)) * dtype.itemsize
            if expected != len(tensor.raw_data):
                raise LoadError(
                    self.path,
                    f"tensor {tensor.name!r} declares {dims} ({expected} bytes) "
                    f"but holds {len(tensor.raw_data)} bytes",
                )

    def _materialise(self, tensor: TensorProto) -> np.ndarray:
        value = _tensor_value(tensor)
        if value is None:
            raise ValueError(f"tensor {tensor.name!r} cannot be read")
        return value

    # -- graphs ------------------------------------------------------------------------
    def _graph(self, graph: GraphProto, initializers, scope: Scope, top: bool) -> None:
        initializer_names = set()
        for tensor in initializers:
            initializer_names.add(tensor.name)
            self._add_initializer(tensor, scope.define(tensor.name))
        if graph.sparse_initializer:
            self.graph.facts.unsupported.append("sparse initializers")
        # The typed copy declares weightless initializers as inputs; only the file's own
        # input list says which tensors a caller can feed.
        declared = {value.name for value in self.model.graph.input} if top else set()
        for value in graph.input:
            key = (
                scope.key(value.name)
                if value.name in initializer_names
                else scope.define(value.name)
            )
            self._set_type(key, value)
            if top and value.name in declared:
                self.graph.tensor(key).is_graph_input = True
                if value.name not in initializer_names:
                    self.graph.graph_inputs.append(key)
        for value in graph.value_info:
            self._set_type(scope.key(value.name), value)
        for value in graph.output:
            self._set_type(scope.key(value.name), value)
        for index, node in enumerate(graph.node):
            self._node(node, index, scope)
        for value in graph.output:
            key = scope.key(value.name)
            self._set_type(key, value)
            if top:
                self.graph.tensor(key).is_graph_output = True
                self.graph.graph_outputs.append(key)

    def _set_type(self, key: str, value: onnx.ValueInfoProto) -> None:
        shape, dtype = _type_of(value)
        record = self.graph.tensor(key)
        if shape is not None and record.shape is None:
            record.shape = shape
        if dtype is not None and record.dtype is None:
            record.dtype = dtype

    def _node(self, node: NodeProto, index: int, scope: Scope) -> None:
        inputs = [scope.key(name) if name else "" for name in node.input]
        if node.domain in ("", "ai.onnx") and self._fold(node, inputs, scope):
            return
        weight = inputs[1] if len(inputs) > 1 else ""
        op, implied = canonical_op(node.op_type, node.domain, weight in self.graph.params)
        if node.domain not in STANDARD_DOMAINS:
            self.graph.facts.unsupported.append(f"{node.domain}::{node.op_type}")
        attrs = normalize(
            op, node.op_type, {**_attributes(node), **implied}, list(node.output), self.opset
        )
        outputs = [scope.define(name) if name else "" for name in node.output]
        name = node.name or f"<{node.op_type}#{index}>"
        meta = exporter_metadata(node)
        if meta.exported_in_training and op == "batch_norm":
            attrs["exported_in_training"] = True
        location = Location(
            file=str(self.path),
            node_index=index,
            subgraph=scope.path or None,
            source_file=meta.source_file,
            source_line=meta.source_line,
        )
        self.graph.add_node(
            op,
            node.op_type,
            name,
            inputs,
            outputs,
            attrs=attrs,
            scope=meta.module_path or (legacy_module_path(node.name) if self.from_torch else None),
            location=location,
            subgraph=scope.path or None,
        )
        for attribute in node.attribute:
            for number, body in enumerate(_bodies(attribute)):
                suffix = f"[{number}]" if attribute.type == AttributeProto.GRAPHS else ""
                child = Scope(scope, f"{scope.path}/{name}.{attribute.name}{suffix}".lstrip("/"))
                self._graph(body, body.initializer, child, top=False)

    def _fold(self, node: NodeProto, inputs: list[str], scope: Scope) -> bool:
        """Evaluate a constant node; True when it became parameters instead of a node."""
        if node.op_type == "Constant":
            value = _attributes(node).get("value")
            if not isinstance(value, np.ndarray):
                value = _constant_scalar(node)
            if value is None:
                return False
            self._define_constant(scope, node.output[0], value)
            return True
        if node.op_type not in EVALUATORS or not inputs or not all(node.output):
            return False
        present = [name for name in inputs if name]
        constant = self.graph.is_constant
        if node.op_type == "Identity" and constant(present[0]):
            self._alias(scope, node.output[0], present[0])
            return True
        values = self._fold_inputs(node.op_type, inputs, present)
        if values is None:
            return False
        outputs = evaluate(node.op_type, values, _attributes(node), self.opset)
        if outputs is None or len(outputs) != len(node.output):
            return False
        for name, value in zip(node.output, outputs, strict=True):
            self._define_constant(scope, name, value)
        return True

    def _fold_inputs(self, op_type: str, inputs: list[str], present: list[str]) -> list | None:
        """The values an evaluator needs, or None when the node is not constant."""
        graph, params = self.graph, self.graph.params

        def small(name: str) -> bool:
            shape = params.shape(name)
            return shape is not None and int(np.prod(shape, dtype=object)) * 8 <= MAX_FOLD_BYTES

        if op_type in SHAPE_ONLY:
            shape = graph.shape(present[0])
            if shape is None or not all(isinstance(d, int) for d in shape):
                return None
            return [_ShapeOnly(shape)]
        if op_type == "CastLike" and len(present) == 2:
            # Only the target's dtype matters (dynamo casts a zero bias like the activation).
            target = numpy_dtype_by_name(graph.dtype(present[1]))
            if target is None or not graph.is_constant(present[0]) or not small(present[0]):
                return None
            return [params.get(present[0]), np.zeros(0, dtype=target)]
        if not all(graph.is_constant(name) and small(name) for name in present):
            return None
        try:
            return [params.get(name) if name else None for name in inputs]
        except Exception:  # an unreadable tensor stays a node; rules see it as non-constant
            return None

    def _define_constant(self, scope: Scope, name: str, value: np.ndarray) -> None:
        key = scope.define(name)
        self.graph.params.add(key, value)
        record = self.graph.tensor(key)
        record.shape, record.dtype, record.is_param = tuple(value.shape), value.dtype.name, True

    def _alias(self, scope: Scope, name: str, source: str) -> None:
        key = scope.define(name)
        params = self.graph.params
        params.add(
            key, lambda: params.get(source), shape=params.shape(source), dtype=params.dtype(source)
        )
        record, origin = self.graph.tensor(key), self.graph.tensor(source)
        record.shape, record.dtype, record.is_param = origin.shape, origin.dtype, True

    def _record_batch_sizes(self) -> None:
        for position, name in enumerate(self.graph.graph_inputs):
            shape = self.graph.tensors[name].shape
            given = name in self.input_shapes or (position == 0 and "" in self.input_shapes)
            source = "--input-shape" if given else f"input shape of {name!r}"
            if shape and isinstance(shape[0], int) and shape[0] > 0:
                self.graph.facts.batch_sizes[name] = BatchSize(shape[0], source)


class _ShapeOnly:
    """Stands in for a tensor whose values are unknown but whose shape is static."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.size = int(np.prod(shape, dtype=np.int64))
        self.ndim = len(shape)


def _constant_scalar(node: NodeProto) -> np.ndarray | None:
    attrs = _attributes(node)
    for key, dtype in (("value_float", np.float32), ("value_int", np.int64)):
        if key in attrs:
            return np.array(attrs[key], dtype=dtype)
    for key, dtype in (("value_floats", np.float32), ("value_ints", np.int64)):
        if key in attrs:
            return np.array(attrs[key], dtype=dtype)
    return None
