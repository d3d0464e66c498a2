"""ModelGraph: the framework-neutral graph every rule is written against.

Loaders (``bnlint.loaders``) build it; rules only read it. Nodes carry a canonical
``op`` (``conv``, ``batch_norm``, ``activation`` …) next to the format's own
``source_op``, so a rule is written once for ONNX and PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bnlint.graph_facts import BatchSize, GraphCache, GraphFacts, ModelSource
from bnlint.params import ParamStore, UnreadableParameter

if TYPE_CHECKING:
    import networkx as nx
    import numpy as np

__all__ = [
    "CANONICAL_OPS",
    "FOLD_PRODUCER_OPS",
    "NORM_OPS",
    "ROLES",
    "BatchSize",
    "GraphCache",
    "GraphFacts",
    "Location",
    "ModelGraph",
    "ModelSource",
    "Node",
    "ParamStore",
    "Shape",
    "Tensor",
    "UnreadableParameter",
]

CANONICAL_OPS = frozenset(
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
        "cast",
        "pad",
        "resize",
        "control_flow",
        "other",
    }
)
NORM_OPS = frozenset({"batch_norm", "layer_norm", "group_norm", "instance_norm", "rms_norm"})
FOLD_PRODUCER_OPS = frozenset({"conv", "conv_transpose", "linear"})

# Input roles per canonical op, in the order the ONNX and aten signatures use.
ROLES: dict[str, tuple[str, ...]] = {
    "batch_norm": ("input", "scale", "bias", "mean", "var"),
    "conv": ("input", "weight", "bias"),
    "conv_transpose": ("input", "weight", "bias"),
    "linear": ("input", "weight", "bias"),
    "layer_norm": ("input", "scale", "bias"),
    "group_norm": ("input", "scale", "bias"),
    "instance_norm": ("input", "scale", "bias"),
    "rms_norm": ("input", "scale"),
}

_ROLE_INDEX = {op: {role: i for i, role in enumerate(roles)} for op, roles in ROLES.items()}
_NO_ROLES: dict[str, int] = {}

Shape = tuple[int | str | None, ...]


@dataclass(slots=True)
class Location:
    """Where a node lives: the model file plus whatever the front end knows."""

    file: str
    node_index: int | None = None
    subgraph: str | None = None
    source_file: str | None = None
    source_line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "node_index": self.node_index,
            "subgraph": self.subgraph,
            "source_file": self.source_file,
            "source_line": self.source_line,
        }


@dataclass(slots=True, eq=False)
class Node:
    """One operation. ``id`` is its position in graph order (stable, used for sorting)."""

    id: int
    op: str
    source_op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)
    scope: str | None = None
    location: Location | None = None
    subgraph: str | None = None

    def input(self, role: str) -> str | None:
        """The tensor name bound to ``role`` (``weight``, ``mean`` …), or None if absent."""
        index = _ROLE_INDEX.get(self.op, _NO_ROLES).get(role)
        if index is None:
            return None
        inputs = self.inputs
        if index < len(inputs) and inputs[index]:
            return inputs[index]
        return None

    @property
    def display_name(self) -> str:
        return self.scope or self.name or f"#{self.id}"


@dataclass(slots=True)
class Tensor:
    name: str
    shape: Shape | None = None
    dtype: str | None = None
    producer: int | None = None
    consumers: list[int] = field(default_factory=list)
    is_param: bool = False
    is_graph_input: bool = False  # a caller may feed it (an overridable initializer too)
    is_graph_output: bool = False
    listed_as_input: bool = False  # an initializer also in graph.input (even before IR 4)
    # Why an edge exists when the file does not record it (state dicts, pickled modules):
    # "nn.Sequential order", "layer names (conv1/bn1) and matching channels" …
    inferred: str | None = None


class ModelGraph:
    """The nodes of a model in graph order, a tensor table and lazy parameters, with
    precomputed indices for the queries every rule makes (:meth:`nodes_of`,
    :meth:`producer`, :meth:`consumers`) and :attr:`nx`, the same graph as a networkx
    ``MultiDiGraph`` for path, ancestor and pattern queries (docs/plugins.md).

    Node ids are integers in graph order; subgraph (If/Loop/Scan) bodies are flattened
    into the same graph and marked with ``Node.subgraph``.
    """

    def __init__(self, path: str | Path, facts: GraphFacts) -> None:
        self.path = str(path)
        self.facts = facts
        self._nx: nx.MultiDiGraph | None = None
        # Loaders may defer shape inference until a rule first asks for a shape. The
        # provider returns a mapping name -> (shape, dtype), consulted name by name.
        self.shape_provider: Callable[[], Mapping[str, tuple[Shape | None, str | None]]] | None = (
            None
        )
        self._inferred: Mapping[str, tuple[Shape | None, str | None]] | None = None
        self.tensors: dict[str, Tensor] = {}
        self.params = ParamStore()
        self.graph_inputs: list[str] = []
        self.graph_outputs: list[str] = []
        self._nodes: list[Node] = []
        self._by_op: dict[str, list[Node]] = {}
        self.source = ModelSource()
        self.cache = GraphCache()
        # Set by loaders that can execute the model; see bnlint.runtime.
        self.runner_factory: Callable[[], Any] | None = None

    # -- building (loaders only) -------------------------------------------------------
    def tensor(self, name: str) -> Tensor:
        """The tensor record for ``name``, created on first use."""
        record = self.tensors.get(name)
        if record is None:
            record = self.tensors[name] = Tensor(name)
        return record

    def add_node(
        self,
        op: str,
        source_op: str,
        name: str,
        inputs: Iterable[str],
        outputs: Iterable[str],
        **fields: Any,
    ) -> Node:
        if op not in CANONICAL_OPS:
            raise ValueError(f"unknown canonical op {op!r}")
        node_id = len(self._nodes)
        node = Node(node_id, op, source_op, name, list(inputs), list(outputs), **fields)
        self._nodes.append(node)
        self._nx = None  # a view built before this node is stale
        by_op = self._by_op.get(op)
        if by_op is None:
            self._by_op[op] = [node]
        else:
            by_op.append(node)
        tensors = self.tensors
        for tensor_name in node.inputs:
            if tensor_name:
                record = tensors.get(tensor_name)
                if record is None:
                    record = tensors[tensor_name] = Tensor(tensor_name)
                record.consumers.append(node_id)
        for tensor_name in node.outputs:
            if tensor_name:
                record = tensors.get(tensor_name)
                if record is None:
                    record = tensors[tensor_name] = Tensor(tensor_name)
                record.producer = node_id
        return node

    def finalize(self) -> ModelGraph:
        """Mark the graph complete (the networkx view is built on first use)."""
        self._nx = None
        return self

    @property
    def nx(self) -> nx.MultiDiGraph:
        """The graph as a read-only networkx ``MultiDiGraph``, for path, ancestor and
        pattern queries (``networkx.ancestors``, ``has_path``, ``isomorphism`` …).

        Nodes are node ids (:attr:`Node.id`, graph order) carrying the node's fields as
        attributes: ``op``, ``source_op``, ``name``, ``scope``, ``attrs``, ``inputs``,
        ``outputs``, ``subgraph``, ``location`` and ``node`` (the :class:`Node` itself).
        Each tensor that one node produces and another consumes is an edge producer ->
        consumer whose key is the tensor name, with attributes ``tensor`` (the name),
        ``shape`` and ``dtype`` (as :meth:`shape` and :meth:`dtype` give them). Graph
        inputs and parameters have no producer and so no edge: they are in
        :attr:`tensors` and in each node's ``inputs``. ``graph.nx.graph`` holds ``path``
        and ``format``.

        Built on first use and cached (the built-in rules use the precomputed indices);
        frozen: ``graph.nx.copy()`` gives a graph to change.
        """
        if self._nx is None:
            from bnlint.graph_nx import networkx_view

            self._nx = networkx_view(self)
        return self._nx

    def _inferred_type(self, record: Tensor) -> None:
        """Fill ``record``'s unknown shape and dtype from deferred shape inference."""
        if self._inferred is None:
            provider, self.shape_provider = self.shape_provider, None
            if provider is None:
                return
            self._inferred = provider()
        found = self._inferred.get(record.name)
        if found is None:
            return
        shape, dtype = found
        if record.shape is None and shape is not None:
            record.shape = shape
        if record.dtype is None and dtype is not None:
            record.dtype = dtype

    # -- queries (rules) ---------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        """All nodes in graph order."""
        return self._nodes

    def node(self, node_id: int) -> Node:
        return self._nodes[node_id]

    def nodes_of(self, *ops: str) -> list[Node]:
        """Nodes whose canonical op is one of ``ops``, in graph order."""
        if len(ops) == 1:
            return list(self._by_op.get(ops[0], ()))
        found = [node for op in ops for node in self._by_op.get(op, ())]
        return sorted(found, key=lambda node: node.id)

    def producer(self, tensor_name: str | None) -> Node | None:
        if not tensor_name:
            return None
        record = self.tensors.get(tensor_name)
        if record is None or record.producer is None:
            return None
        return self._nodes[record.producer]

    def consumers(self, tensor_name: str | None) -> list[Node]:
        if not tensor_name:
            return []
        record = self.tensors.get(tensor_name)
        if record is None:
            return []
        return [self._nodes[i] for i in dict.fromkeys(record.consumers)]

    def input_producer(self, node: Node, role: str = "input") -> Node | None:
        """The node producing ``node``'s input of ``role`` (the data input by default)."""
        if node.op in ROLES:
            return self.producer(node.input(role))
        return self.producer(node.inputs[0] if role == "input" and node.inputs else None)

    def successors(self, node: Node) -> list[Node]:
        ids = dict.fromkeys(i for name in node.outputs if name for i in self._consumer_ids(name))
        return [self._nodes[i] for i in ids]

    def predecessors(self, node: Node) -> list[Node]:
        ids = dict.fromkeys(
            record.producer
            for name in node.inputs
            if name
            and (record := self.tensors.get(name)) is not None
            and record.producer is not None
        )
        return [self._nodes[i] for i in ids]

    def _consumer_ids(self, name: str) -> list[int]:
        record = self.tensors.get(name)
        return record.consumers if record is not None else []

    def shape(self, tensor_name: str | None) -> Shape | None:
        """The tensor's shape (ints, symbolic strings or None per dim), or None if unknown."""
        if not tensor_name:
            return None
        param_shape = self.params.shape(tensor_name)
        if param_shape is not None:
            return param_shape
        record = self.tensors.get(tensor_name)
        if record is None:
            return None
        if record.shape is None and (self._inferred is not None or self.shape_provider):
            self._inferred_type(record)
        return record.shape

    def dtype(self, tensor_name: str | None) -> str | None:
        if not tensor_name:
            return None
        param_dtype = self.params.dtype(tensor_name)
        if param_dtype is not None:
            return param_dtype
        record = self.tensors.get(tensor_name)
        if record is None:
            return None
        if record.dtype is None and (self._inferred is not None or self.shape_provider):
            self._inferred_type(record)
        return record.dtype

    def is_constant(self, tensor_name: str | None) -> bool:
        """True when the tensor is a parameter that no runtime input can replace."""
        if not tensor_name or tensor_name not in self.params:
            return False
        record = self.tensors.get(tensor_name)
        return record is None or not record.is_graph_input

    def param(self, tensor_name: str | None) -> np.ndarray | None:
        """The parameter array, or None when the tensor is not a known parameter."""
        if not tensor_name or tensor_name not in self.params:
            return None
        return self.params.get(tensor_name)

    def __len__(self) -> int:
        return len(self._nodes)
