"""ONNX front end: a ModelProto (opset 1 to newest) into a ModelGraph.

The file is parsed without its external data. Embedded parameters are registered in bulk
and decoded only when a rule reads one; external data is validated up front and then
memory-mapped on demand; shape inference runs only when a rule first asks for a shape.
If/Loop/Scan bodies are flattened into the same graph, and constant plumbing feeding
parameters is evaluated (see ``onnx_const``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto

from bnlint.graph import BatchSize, GraphFacts, Location, ModelGraph
from bnlint.loaders import LoadError
from bnlint.loaders.external import ExternalDataResolver, lazy_reader
from bnlint.loaders.onnx_const import EVALUATORS, MAX_FOLD_BYTES, SHAPE_ONLY, evaluate
from bnlint.loaders.onnx_ops import STANDARD_DOMAINS, canonical_op, normalize
from bnlint.loaders.onnx_scope import Scope, exporter_metadata, legacy_module_path
from bnlint.loaders.onnx_shapes import infer_types, type_of
from bnlint.loaders.onnx_tensors import attributes, constant_value, describe, read_embedded
from bnlint.loaders.onnx_types import dtype_name, numpy_dtype, numpy_dtype_by_name

# Ops whose first output has the dtype of their first input (for cheap dtype propagation).
_SAME_DTYPE = frozenset(
    {
        "conv",
        "conv_transpose",
        "linear",
        "matmul",
        "batch_norm",
        "layer_norm",
        "group_norm",
        "instance_norm",
        "rms_norm",
        "activation",
        "softmax",
        "dropout",
        "add",
        "sub",
        "mul",
        "div",
        "concat",
        "split",
        "pool",
        "reshape",
        "transpose",
        "flatten",
        "identity",
        "pad",
        "resize",
    }
)


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
    graph = _Builder(model, path, settings).build()
    # Fold and verify (bnlint.fold_api) and dynamic checks run the model itself; keeping a
    # reference costs nothing, and a session is only created when a check asks for one.
    graph.extras["onnx_model"] = model
    graph.runner_factory = lambda: _onnx_runner(graph)
    return graph


def _onnx_runner(graph: ModelGraph) -> Any:
    from bnlint.runtime_onnx import runner_for_graph

    return runner_for_graph(graph)


def _inline_functions(model: ModelProto, path: Path) -> ModelProto:
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
        self.input_shapes = dict(getattr(settings, "input_shapes", {}) or {})

    def build(self) -> ModelGraph:
        max_nodes = getattr(self.settings, "max_nodes", 2_000_000)
        total = _count_nodes(self.model.graph, 0, self.max_depth, self.path)
        if total > max_nodes:
            raise LoadError(self.path, f"{total} nodes exceed the limit of {max_nodes} (max-nodes)")
        self._graph(self.model.graph, Scope(None, ""), top=True)
        self._record_batch_sizes()
        model, shapes = self.model, self.input_shapes
        self.graph.shape_provider = lambda: infer_types(model, shapes, body_path)
        return self.graph.finalize()

    # -- parameters ------------------------------------------------------------------
    def _add_initializers(self, initializers, scope: Scope) -> set[str]:
        names, embedded = set(), {}
        for tensor in initializers:
            names.add(tensor.name)
            key = scope.define(tensor.name)
            if tensor.data_location == TensorProto.EXTERNAL:
                self._add_external(tensor, key)
            else:
                embedded[key] = tensor
        self.graph.params.add_sources(embedded, describe, read_embedded)
        return names

    def _add_external(self, tensor: TensorProto, key: str) -> None:
        dims = tuple(int(d) for d in tensor.dims)
        dtype = numpy_dtype(tensor.data_type)
        if dtype is None or any(d < 0 for d in dims):
            self.graph.facts.partial.append(f"external tensor {tensor.name!r} of unsupported type")
            return
        entries = {entry.key: entry.value for entry in tensor.external_data}
        nbytes = int(np.prod(dims, dtype=object)) * dtype.itemsize
        ref = self.resolver.resolve(tensor.name, entries, nbytes)
        self.graph.params.add(key, lazy_reader(ref, dtype, dims), shape=dims, dtype=dtype.name)

    # -- graphs ------------------------------------------------------------------------
    def _graph(self, graph: GraphProto, scope: Scope, top: bool) -> None:
        initializer_names = self._add_initializers(graph.initializer, scope)
        if graph.sparse_initializer:
            self.graph.facts.unsupported.append("sparse initializers")
        for position, value in enumerate(graph.input):
            if value.name in initializer_names:
                self.graph.tensor(scope.key(value.name)).is_graph_input = top
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
        inputs = list(node.input) if top else [scope.key(n) if n else "" for n in node.input]
        if node.domain in ("", "ai.onnx") and self._fold(node, inputs, scope):
            return
        params = self.graph.params
        weight_is_param = len(inputs) > 1 and inputs[1] in params
        op, implied = canonical_op(node.op_type, node.domain, weight_is_param)
        if node.domain not in STANDARD_DOMAINS:
            self.graph.facts.unsupported.append(f"{node.domain}::{node.op_type}")
        attrs = attributes(node)
        if implied:
            attrs.update(implied)
        attrs = normalize(op, node.op_type, attrs, list(node.output), self.opset)
        outputs = list(node.output) if top else [scope.define(n) if n else "" for n in node.output]
        name = node_name(node, index)
        meta = exporter_metadata(node)
        if meta.exported_in_training and op == "batch_norm":
            attrs["exported_in_training"] = True
        module_path = meta.module_path or (legacy_module_path(name) if self.from_torch else None)
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
            scope=module_path,
            location=location,
            subgraph=scope.path or None,
        )
        self._propagate_dtype(op, node, inputs, outputs, attrs)
        for attribute in node.attribute:
            for number, body in enumerate(_bodies(attribute)):
                child = Scope(scope, body_path(scope.path, node, index, attribute, number))
                self._graph(body, child, top=False)

    def _propagate_dtype(self, op: str, node: NodeProto, inputs, outputs, attrs) -> None:
        """Output dtypes without shape inference, for the ops that keep their input's dtype."""
        if not outputs or not outputs[0]:
            return
        record = self.graph.tensor(outputs[0])
        if record.dtype is not None:
            return
        if op == "cast" and node.op_type == "Cast" and "to" in attrs:
            record.dtype = dtype_name(attrs["to"])
        elif op in _SAME_DTYPE and inputs and inputs[0]:
            source = self.graph.tensors.get(inputs[0])
            record.dtype = (
                source.dtype
                if source is not None and source.dtype
                else (self.graph.params.dtype(inputs[0]))
            )

    # -- constant plumbing -------------------------------------------------------------
    def _fold(self, node: NodeProto, inputs: list[str], scope: Scope) -> bool:
        """Evaluate a constant node; True when it became parameters instead of a node."""
        op_type = node.op_type
        if op_type == "Constant":
            value = constant_value(node)
            if value is None:
                return False
            self._define_constant(scope, node.output[0], value)
            return True
        if op_type not in EVALUATORS or not inputs or not all(node.output):
            return False
        present = [name for name in inputs if name]
        if op_type == "Identity" and self.graph.is_constant(present[0]):
            self._alias(scope, node.output[0], present[0])
            return True
        values = self._fold_inputs(op_type, inputs, present)
        if values is None:
            return False
        outputs = evaluate(op_type, values, attributes(node), self.opset)
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
            shape = graph.shape(present[0]) if present[0] in params else self._static(present[0])
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

    def _static(self, name: str) -> tuple | None:
        """A runtime tensor's shape if it is known without running inference."""
        record = self.graph.tensors.get(name)
        if record is not None and record.shape is not None:
            return record.shape
        return self.graph.shape(name)

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
        self.graph.tensor(key).is_param = True

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
