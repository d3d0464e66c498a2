"""A graph for module trees read without code: edges inferred, and marked as inferred.

A state dict or a pickled ``nn.Module`` has layers but no ``forward``. Some dataflow still
follows from what the file does hold:

- **``nn.Sequential`` order** (pickled modules: the container's class is named in the
  pickle): each child feeds the next, nested containers included;
- **consecutive indices** (state dicts: ``features.3.weight`` then ``features.4.running_mean``)
  when the out-channels of the first equal the features of the second;
- **naming conventions** among siblings (``convN``/``bnN``, ``conv``/``bn``, ``fc``/``bn`` …),
  when the producer is registered before the BN and the shapes agree.

Names alone never make an edge: where names and shapes disagree nothing is inferred (a
pre-activation block registers ``bn1`` before ``conv1``; a pruned layer's BN has more
features than its conv has channels), so a clean model gets no false error. Every inferred
edge carries its reason on its tensor (``Tensor.inferred``), and the engine words every
finding that rests on one as inferred.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from bnlint.graph import Location, ModelGraph
from bnlint.loaders.torch_modules import (
    ROLE_TENSORS,
    ModuleRecord,
    canonical_module_op,
    module_bn_attrs,
)
from bnlint.loaders.torch_shapes import infer_shapes

SEQUENTIAL = "torch.nn.modules.container.Sequential"
PRODUCERS = ("conv", "conv_transpose", "linear")
_PRODUCER_NAME = re.compile(r"^(conv|deconv|convt|fc|linear|proj)_?(\d*)$")
_NORM_NAME = re.compile(r"^(bn|norm|batchnorm)_?(\d*)$")
_SHAPE_KEEPING = frozenset({"batch_norm", "activation", "dropout", "identity"})
BY_SEQUENTIAL = "nn.Sequential order: the container's class as named in the pickle"
BY_INDEX = "parameter names and shapes: consecutive Sequential indices, matching channels"
BY_NAME = "parameter names and shapes: layer names {producer}/{bn}, matching channels"


@dataclass(frozen=True)
class InferredEdge:
    producer: str
    consumer: str
    reason: str


def _children(records: Mapping[str, ModuleRecord]) -> dict[str, list[str]]:
    """Child paths of every path, in the records' (registration) order."""
    found: dict[str, list[str]] = {}
    for path in records:
        if not path:
            continue
        parts = path.split(".")
        for depth in range(1, len(parts) + 1):
            parent, child = ".".join(parts[: depth - 1]), ".".join(parts[:depth])
            kids = found.setdefault(parent, [])
            if child not in kids:
                kids.append(child)
    return found


class EdgeInference:
    def __init__(self, graph: ModelGraph, records: Mapping[str, ModuleRecord]) -> None:
        self.graph = graph
        self.records = records
        self.children = _children(records)
        self.ops: dict[str, tuple[str, dict[str, Any]]] = {}
        for path, record in records.items():
            if record.has_children and record.op is None:
                continue
            mapped = canonical_module_op(record)
            if mapped is not None:
                self.ops[path] = mapped

    # -- shapes of parameters ----------------------------------------------------------------
    def _shape(self, record: ModuleRecord, role: str) -> tuple | None:
        name = record.tensors.get(role)
        return self.graph.params.shape(name) if name else None

    def out_channels(self, path: str) -> int | None:
        record, op = self.records[path], self.ops[path][0]
        weight = self._shape(record, "weight")
        if not weight or not isinstance(weight[0], int):
            return None
        if op == "conv_transpose":
            groups = record.constants.get("groups") or 1
            return weight[1] * groups if len(weight) > 1 and isinstance(groups, int) else None
        return weight[0]

    def features(self, path: str) -> int | None:
        record = self.records[path]
        for role in ("running_mean", "weight"):
            shape = self._shape(record, role)
            if shape and len(shape) == 1 and isinstance(shape[0], int):
                return shape[0]
        return None

    def agree(self, producer: str, bn: str) -> bool:
        channels = self.out_channels(producer)
        return channels is not None and channels == self.features(bn)

    # -- edges -------------------------------------------------------------------------------
    def infer(self, sequential_by_class: bool) -> list[InferredEdge]:
        edges: dict[str, InferredEdge] = {}
        for parent, kids in self.children.items():
            record = self.records.get(parent)
            if sequential_by_class and record is not None and record.qualname == SEQUENTIAL:
                self._chain(kids, edges)
            elif not sequential_by_class:
                self._indices(kids, edges)
            self._names(kids, edges)
        return list(edges.values())

    def _ends(self, path: str, depth: int = 0) -> tuple[str | None, str | None]:
        """(first leaf that reads this module's input, leaf that writes its output)."""
        if path in self.ops:
            return path, path
        record, kids = self.records.get(path), self.children.get(path)
        if depth < 100 and record is not None and record.qualname == SEQUENTIAL and kids:
            return self._ends(kids[0], depth + 1)[0], self._ends(kids[-1], depth + 1)[1]
        return None, None

    def _chain(self, kids: list[str], edges: dict[str, InferredEdge]) -> None:
        for before, after in pairwise(kids):
            exit_, entry = self._ends(before)[1], self._ends(after)[0]
            if exit_ is not None and entry is not None and entry not in edges:
                edges[entry] = InferredEdge(exit_, entry, BY_SEQUENTIAL)

    def _indices(self, kids: list[str], edges: dict[str, InferredEdge]) -> None:
        numbered = {int(k.rpartition(".")[2]): k for k in kids if k.rpartition(".")[2].isdigit()}
        for index, producer in numbered.items():
            bn = numbered.get(index + 1)
            if bn is None or bn in edges or not self._pair(producer, bn):
                continue
            if self.agree(producer, bn):
                edges[bn] = InferredEdge(producer, bn, BY_INDEX)

    def _pair(self, producer: str, bn: str) -> bool:
        return (
            self.ops.get(producer, ("",))[0] in PRODUCERS
            and self.ops.get(bn, ("",))[0] == "batch_norm"
        )

    def _names(self, kids: list[str], edges: dict[str, InferredEdge]) -> None:
        for position, bn in enumerate(kids):
            bn_match = _NORM_NAME.match(bn.rpartition(".")[2])
            if bn_match is None or bn in edges or self.ops.get(bn, ("",))[0] != "batch_norm":
                continue
            candidates = [
                producer
                for producer in kids[:position]  # registered before the BN
                if (match := _PRODUCER_NAME.match(producer.rpartition(".")[2])) is not None
                and match.group(2) == bn_match.group(2)
                and self._pair(producer, bn)
            ]
            if len(candidates) == 1 and self.agree(candidates[0], bn):
                names = BY_NAME.format(
                    producer=candidates[0].rpartition(".")[2], bn=bn.rpartition(".")[2]
                )
                edges[bn] = InferredEdge(candidates[0], bn, names)


def add_inferred_graph(
    graph: ModelGraph,
    records: Mapping[str, ModuleRecord],
    requires_grad: Mapping[str, bool] | None,
    sequential_by_class: bool,
) -> int:
    """One node per leaf module of a known kind, joined by inferred edges; returns how many
    edges were inferred."""
    inference = EdgeInference(graph, records)
    edges = {edge.consumer: edge for edge in inference.infer(sequential_by_class)}
    root = records.get("")
    root_training = root.training if root is not None else None
    for path, (op, attrs) in inference.ops.items():
        record = records[path]
        edge = edges.get(path)
        data = f"{edge.producer}:output" if edge is not None else ""
        inputs = [data] + [record.tensors.get(role) or "" for role in ROLE_TENSORS.get(op, ())]
        while len(inputs) > 1 and not inputs[-1]:
            inputs.pop()
        if op == "batch_norm":
            attrs = module_bn_attrs(record, graph.params, requires_grad, root_training)
        name = path or "<root>"
        graph.add_node(
            op,
            record.class_name or ("BatchNorm" if op == "batch_norm" else op),
            name,
            inputs,
            [f"{name}:output"],
            attrs=attrs,
            scope=path or None,
            location=Location(file=graph.path),
        )
        if edge is not None:
            graph.tensor(data).inferred = edge.reason
    _partial_shapes(graph, inference, edges)
    assume_linear_features(graph)
    if edges:
        how = " and ".join(sorted({edge.reason.partition(":")[0] for edge in edges.values()}))
        graph.facts.inferred.append(
            f"{len(edges)} edge(s) inferred from {how}; the rest of the dataflow is unknown"
        )
    return len(edges)


def _partial_shapes(
    graph: ModelGraph, inference: EdgeInference, edges: Mapping[str, InferredEdge]
) -> None:
    """Shapes along inferred chains, as far as the layers themselves determine them: a global
    pooling makes the spatial size 1, a conv sets the channels, and a BatchNorm1d right after
    a Linear with matching features normalizes (N, C) features."""
    for node in graph.nodes:
        record = inference.records.get(node.scope or "")
        if record is None:
            continue
        data = node.inputs[0] if node.inputs else ""
        shape = graph.shape(data) if data else None
        out: tuple | None = None
        if node.op == "pool" and node.attrs.get("kind", "").startswith("global"):
            rank = _spatial_rank(record.qualname)
            if rank:
                lead = tuple(shape[:2]) if shape and len(shape) == rank + 2 else (None, None)
                out = (*lead, *(1,) * rank)
        elif node.op in ("conv", "conv_transpose") and shape is not None:
            weight_name = record.tensors.get("weight") or ""
            shapes = {data: shape, weight_name: inference._shape(record, "weight")}
            args = {"input": data, "weight": weight_name, **_conv_arguments(record)}
            kind = "conv_transpose2d" if node.op == "conv_transpose" else "conv2d"
            out = infer_shapes(kind, args, shapes.get)[0]
        elif node.op in _SHAPE_KEEPING:
            out = shape
        elif node.op == "linear":
            out = _linear_out(shape, inference.out_channels(record.path))
        if out is not None and graph.tensors[node.outputs[0]].shape is None:
            graph.tensor(node.outputs[0]).shape = out


def _linear_out(shape: tuple | None, channels: int | None) -> tuple | None:
    if shape is None or channels is None:
        return None
    return (*shape[:-1], channels)


BY_LINEAR_WIDTH = (
    "parameter names and shapes: a BatchNorm1d fed by a Linear of its width sees (N, C) features"
)


def assume_linear_features(graph: ModelGraph) -> int:
    """Where the input shape of a BatchNorm1d fed directly by a Linear of the same width is
    unknown, take it as (N, C): a (N, L, C) input would put the Linear's features on the
    axis the BN does not normalize, which only a coincidence L == C lets run. The tensor is
    marked as inferred, so findings that rest on it say so. Returns how many were set."""
    count = 0
    for bn in graph.nodes_of("batch_norm"):
        data = bn.inputs[0] if bn.inputs else ""
        record = graph.tensors.get(data)
        producer = graph.producer(data)
        if record is None or record.shape is not None or producer is None:
            continue
        if producer.op != "linear" or bn.source_op not in ("BatchNorm1d", "BatchNorm"):
            continue
        weight = graph.shape(producer.input("weight"))
        features = graph.shape(bn.input("mean") or bn.input("scale"))
        if weight and features and len(weight) == 2 and tuple(features) == (weight[0],):
            record.shape = (None, weight[0])
            record.inferred = record.inferred or BY_LINEAR_WIDTH
            count += 1
    if count:
        graph.facts.inferred.append(
            f"the (N, C) input shape of {count} BatchNorm1d layer(s) after a Linear was "
            "inferred from parameter shapes"
        )
    return count


def _spatial_rank(qualname: str) -> int | None:
    match = re.search(r"Pool(\d)d$", qualname)
    return int(match.group(1)) if match else None


def _conv_arguments(record: ModuleRecord) -> dict[str, Any]:
    constants = record.constants
    return {
        key: constants[key]
        for key in ("stride", "padding", "dilation", "groups", "output_padding")
        if key in constants
    }
