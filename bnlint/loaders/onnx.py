"""ONNX front end: a ModelProto (opset 1 to newest) into a ModelGraph.

The file is parsed from a memory map, without its external data (``onnx_file``). Embedded
parameters are registered in bulk and decoded only when a rule reads one (large ones as
views of the mapped file); external data is validated up front and then read on demand;
shape inference runs only when a rule first asks for a shape (``onnx_shapes``).
If/Loop/Scan bodies are flattened into the same graph, and constant plumbing feeding
parameters is evaluated (see ``onnx_const``).
"""

from __future__ import annotations

import weakref
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto

from bnlint._perf import gc_paused
from bnlint.graph import CANONICAL_OPS, BatchSize, GraphFacts, Location, ModelGraph
from bnlint.loaders.external import ExternalDataResolver, lazy_reader
from bnlint.loaders.files import LoadError
from bnlint.loaders.onnx_bounded import expanded_node_count
from bnlint.loaders.onnx_const import EVALUATORS
from bnlint.loaders.onnx_file import MappedTensor, read_model
from bnlint.loaders.onnx_ops import STANDARD_DOMAINS, canonical_op, normalize
from bnlint.loaders.onnx_plumbing import ConstantPlumbing
from bnlint.loaders.onnx_scope import Scope, exporter_metadata, legacy_module_path
from bnlint.loaders.onnx_shapes import infer_types, needs_data_prop, type_of
from bnlint.loaders.onnx_tensors import (
    describe,
    external_rows,
    raw_floats,
    read_attributes,
    read_embedded,
)
from bnlint.onnx.elem_types import dtype_name, numpy_dtype

# Ops whose first output has the dtype of their first input (for cheap dtype propagation).
_SAME_DTYPE = CANONICAL_OPS - {"cast", "control_flow", "other"}


def parse(path: Path) -> ModelProto:
    """Parse an ONNX file (binary protobuf, or ONNX text for ``.onnxtxt``)."""
    return read_model(path).model


def load(path: Path, settings: Any) -> ModelGraph:
    found = read_model(path)
    graph = build_graph(
        found.model, path, settings, raw_ranges=found.raw_ranges, buffer=found.buffer
    )
    if found.buffer is not None:
        graph.source.file_buffer = found.buffer  # the file's bytes, mapped (e.g. to hash)
    return graph


def build_graph(
    model: ModelProto,
    path: Path,
    settings: Any,
    *,
    raw_ranges: dict[str, tuple[int, int]] | None = None,
    buffer: Any = None,
) -> ModelGraph:
    """A ModelGraph from an in-memory ModelProto (used by the file loader and the API).

    ``raw_ranges`` locates top-level initializers' raw bytes in ``buffer`` (the mapped
    file), so weights are read without copying.
    """
    if model.functions:
        model = _inline_functions(model, path, getattr(settings, "max_nodes", 2_000_000))
        raw_ranges = None
    builder = _Builder(model, path, settings)
    if raw_ranges and buffer is not None:
        builder.mapped = (buffer, raw_ranges)
    with gc_paused():
        graph = builder.build()
    if builder.resolver.files:
        graph.source.data_files = builder.resolver.files
    # Fold and verify (bnlint.fold) and dynamic checks run the model itself; keeping a
    # reference costs nothing, and a session is only created when a check asks for one.
    graph.source.onnx_model = model
    graph.runner_factory = partial(_onnx_runner, weakref.ref(graph))
    return graph


def _onnx_runner(graph_ref: weakref.ref[ModelGraph]) -> Any:
    """Weakly bound: a graph holding a closure over itself would live until a full
    collection, keeping its parsed model and mapped weights in memory model after model."""
    from bnlint.onnx.runtime import runner_for_graph

    return runner_for_graph(graph_ref())


def _inline_functions(model: ModelProto, path: Path, max_nodes: int) -> ModelProto:
    """Inline model-local functions, after checking what that would build (functions that
    call each other can double the graph at every level: 40 levels of a 4 KB file are
    2**40 nodes)."""
    try:
        total = expanded_node_count(model, max_nodes)
    except ValueError as error:
        raise LoadError(path, str(error)) from None
    if total > max_nodes:
        raise LoadError(path, f"model-local functions expand to over {max_nodes} nodes (max-nodes)")
    try:
        from onnx import inliner

        return inliner.inline_local_functions(model)
    except Exception as error:  # a malformed function must not stop the lint
        raise LoadError(path, f"cannot inline model-local functions: {error}") from None


def _bodies(attribute: AttributeProto) -> list[GraphProto]:
    if attribute.type == AttributeProto.GRAPH:
        return [attribute.g]
    if attribute.type == AttributeProto.GRAPHS:
        return list(attribute.graphs)
    return []


def _count_nodes(graph: GraphProto, depth: int, max_depth: int, path: Path) -> int:
    if depth > max_depth:
        raise LoadError(path, f"subgraph nesting deeper than {max_depth} levels")
    total = len(graph.node)
    for node in graph.node:
        for attribute in node.attribute:
            for body in _bodies(attribute):
                total += _count_nodes(body, depth + 1, max_depth, path)
    return total


def node_name(node: NodeProto, index: int) -> str:
    """The node's name; unnamed nodes get ``<OpType#index>`` (stable for the same file)."""
    return node.name or f"<{node.op_type}#{index}>"


def body_path(
    parent: str, node: NodeProto, index: int, attribute: AttributeProto, number: int
) -> str:
    suffix = f"[{number}]" if attribute.type == AttributeProto.GRAPHS else ""
    return f"{parent}/{node_name(node, index)}.{attribute.name}{suffix}".lstrip("/")


class _Builder(ConstantPlumbing):
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
        self.input_shapes = dict(getattr(settings, "input_shapes", {}) or {})
        self.file = str(path)
        self.mapped: tuple[Any, dict[str, tuple[int, int]]] | None = None
        self.op_types: set[tuple[str, str]] = set()  # (domain, op type), for shape inference
        self.has_bodies = False

    def build(self) -> ModelGraph:
        max_nodes = getattr(self.settings, "max_nodes", 2_000_000)
        total = _count_nodes(self.model.graph, 0, self.max_depth, self.path)
        if total > max_nodes:
            raise LoadError(self.path, f"{total} nodes exceed the limit of {max_nodes} (max-nodes)")
        self._graph(self.model.graph, Scope(None, ""), top=True)
        self._record_batch_sizes()
        model, shapes, ops, notes = (
            self.model,
            self.input_shapes,
            self.op_types,
            self.graph.facts.partial,
        )
        data_prop, bodies = needs_data_prop(ops), self.has_bodies
        self.graph.shape_provider = lambda: infer_types(
            model,
            shapes,
            body_path,
            data_prop=data_prop,
            has_bodies=bodies,
            op_types=ops,
            notes=notes,
        )
        return self.graph.finalize()

    # -- parameters ------------------------------------------------------------------
    def _add_initializers(self, initializers, scope: Scope) -> set[str] | dict[str, Any]:
        """Register a graph's initializers; returns their (unscoped) names."""
        if not len(initializers):
            return set()
        by_name = {tensor.name: tensor for tensor in initializers}
        external = [t for t in by_name.values() if t.data_location == TensorProto.EXTERNAL]
        if scope.parent is None and not external:
            sources: dict[str, Any] = by_name
            if self.mapped is not None:
                buffer, ranges = self.mapped
                sources = {
                    name: MappedTensor(tensor, buffer, *ranges[name]) if name in ranges else tensor
                    for name, tensor in by_name.items()
                }
            self.graph.params.add_sources(sources, describe, read_embedded, raw_floats)
            return by_name
        embedded = {}
        for name, tensor in by_name.items():
            key = scope.define(name)
            if tensor.data_location == TensorProto.EXTERNAL:
                self._add_external(tensor, key)
            else:
                embedded[key] = tensor
        self.graph.params.add_sources(embedded, describe, read_embedded, raw_floats)
        return by_name

    def _add_external(self, tensor: TensorProto, key: str) -> None:
        dims = tuple(int(d) for d in tensor.dims)
        dtype = numpy_dtype(tensor.data_type)
        if dtype is None or any(d < 0 for d in dims):
            self.graph.facts.partial.append(f"external tensor {tensor.name!r} of unsupported type")
            return
        entries = {entry.key: entry.value for entry in tensor.external_data}
        nbytes = int(np.prod(dims, dtype=object)) * dtype.itemsize
        ref = self.resolver.resolve(tensor.name, entries, nbytes)
        self.graph.params.add(
            key,
            lazy_reader(ref, dtype, dims, key),
            shape=dims,
            dtype=dtype.name,
            rows=external_rows(ref, dtype, dims),
        )

    # -- graphs ------------------------------------------------------------------------
    def _graph(self, graph: GraphProto, scope: Scope, top: bool) -> None:
        initializer_names = self._add_initializers(graph.initializer, scope)
        if len(graph.sparse_initializer):
            self.graph.facts.unsupported.append("sparse initializers")
        # Before IR 4 every initializer had to be listed as an input: that is no sign of a
        # parameter meant to be overridden, and runtimes treat it as a constant.
        overridable = top and self.model.ir_version >= 4
        for position, value in enumerate(graph.input):
            if value.name in initializer_names:
                record = self.graph.tensor(scope.key(value.name))
                record.is_graph_input, record.listed_as_input = overridable, top
                continue
            key = scope.define(value.name)
            self._set_type(key, value, declared=True)
            if top:
                record = self.graph.tensor(key)
                record.is_graph_input = True
                self.graph.graph_inputs.append(key)
                given = self.input_shapes.get(value.name)
                if given is None and position == 0:
                    given = self.input_shapes.get("")
                if given is not None:
                    record.shape = tuple(given)
        if top:
            self._check_input_shape_names(graph, initializer_names)
        for value in graph.value_info:
            self._set_type(scope.key(value.name), value)
        for index, node in enumerate(graph.node):
            self._node(node, index, scope)
        for value in graph.output:
            key = scope.key(value.name)
            self._set_type(key, value)
            if top:
                self.graph.tensor(key).is_graph_output = True
                self.graph.graph_outputs.append(key)

    def _check_input_shape_names(self, graph: GraphProto, initializers: Any) -> None:
        """An --input-shape NAME that is no input of the model is a typo, not a no-op."""
        inputs = [value.name for value in graph.input if value.name not in initializers]
        unknown = sorted(set(self.input_shapes) - {""} - set(inputs))
        if unknown:
            names = ", ".join(repr(name) for name in unknown)
            real = ", ".join(inputs) if inputs else "none"
            raise LoadError(
                self.path,
                f"--input-shape names no input of this model: {names} (its inputs: {real}; "
                "a bare 1x3x224x224 sets the first)",
            )

    def _set_type(self, key: str, value: onnx.ValueInfoProto, *, declared: bool = False) -> None:
        shape, dtype = type_of(value)
        if self.input_shapes and not declared:
            shape = None  # recorded shapes predate --input-shape; inference recomputes them
        record = self.graph.tensor(key)
        if shape is not None and record.shape is None:
            record.shape = shape
        if dtype is not None and record.dtype is None:
            record.dtype = dtype

    def _node(self, node: NodeProto, index: int, scope: Scope) -> None:
        top = scope.parent is None
        op_type, domain = node.op_type, node.domain
        self.op_types.add((domain, op_type))
        inputs = list(node.input)
        if not top:
            inputs = [scope.key(n) if n else "" for n in inputs]
        standard = domain in ("", "ai.onnx")
        foldable = standard and (op_type in EVALUATORS or op_type == "Constant")
        if foldable and self._fold(node, inputs, scope):
            return
        graph = self.graph
        weight_is_param = len(inputs) > 1 and inputs[1] in graph.params
        op, implied = canonical_op(op_type, domain, weight_is_param)
        if not standard and domain not in STANDARD_DOMAINS:
            graph.facts.unsupported.append(f"{domain}::{op_type}")
        attribute_protos = node.attribute
        attrs, has_bodies = (
            read_attributes(attribute_protos) if len(attribute_protos) else ({}, False)
        )
        if implied:
            attrs.update(implied)
        outputs = list(node.output)
        try:
            attrs = normalize(op, op_type, attrs, outputs, self.opset)
        except (TypeError, ValueError, OverflowError) as error:
            where = node.name or f"<{op_type}#{index}>"
            raise LoadError(
                self.path, f"node {where!r} ({op_type}): an attribute has the wrong type: {error}"
            ) from None
        if not top:
            outputs = [scope.define(n) if n else "" for n in outputs]
        name = node.name or f"<{op_type}#{index}>"
        if len(node.metadata_props):
            meta = exporter_metadata(node)
            if meta.exported_in_training and op == "batch_norm":
                attrs["exported_in_training"] = True
            module_path = meta.module_path
            source_file, source_line = meta.source_file, meta.source_line
        else:
            module_path, source_file, source_line = None, None, None
        if module_path is None and self.from_torch:
            module_path = legacy_module_path(name)
        subgraph = scope.path or None
        location = Location(self.file, index, subgraph, source_file, source_line)
        graph.add_node(
            op,
            op_type,
            name,
            inputs,
            outputs,
            attrs=attrs,
            scope=module_path,
            location=location,
            subgraph=subgraph,
        )
        if outputs and outputs[0]:
            self._propagate_dtype(op, op_type, inputs, outputs, attrs)
        if has_bodies:
            for attribute in attribute_protos:
                for number, body in enumerate(_bodies(attribute)):
                    self.has_bodies = True
                    child = Scope(scope, body_path(scope.path, node, index, attribute, number))
                    self._graph(body, child, top=False)

    def _propagate_dtype(self, op: str, op_type: str, inputs, outputs, attrs) -> None:
        """Output dtypes without shape inference, for the ops that keep their input's dtype."""
        record = self.graph.tensors[outputs[0]]
        if record.dtype is not None:
            return
        if op == "cast" and op_type == "Cast" and "to" in attrs:
            record.dtype = dtype_name(attrs["to"])
        elif op in _SAME_DTYPE and inputs and inputs[0]:
            source = self.graph.tensors.get(inputs[0])
            record.dtype = (
                source.dtype
                if source is not None and source.dtype
                else (self.graph.params.dtype(inputs[0]))
            )

    def _record_batch_sizes(self) -> None:
        for position, name in enumerate(self.graph.graph_inputs):
            shape = self.graph.tensors[name].shape
            given = name in self.input_shapes or (position == 0 and "" in self.input_shapes)
            source = "--input-shape" if given else f"input shape of {name!r}"
            if shape and isinstance(shape[0], int) and shape[0] > 0:
                self.graph.facts.batch_sizes[name] = BatchSize(shape[0], source)
