"""Graph-walking helpers shared by the structural rules (BN001, BN002, BN007-BN009, BN017).

Every walk is short and bounded (``MAX_HOPS``), so a rule that calls one per node stays
linear in the size of the graph. "Transparent" ops move or relabel values without mixing
them across channels or samples in a way that matters to the rule that asks; each rule
passes the set it can see through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np

from bnlint.graph import NORM_OPS, ModelGraph, Node

__all__ = [
    "ELEMENTWISE_CONST_OPS",
    "LAYOUT_OPS",
    "MAX_HOPS",
    "NORM_OPS",
    "TRANSPARENT_OPS",
    "VALUE_OPS",
    "Walk",
    "constant_operand",
    "data_input",
    "dropout_ratio",
    "is_graph_output",
    "is_param",
    "pooled_tensors",
    "reaches_graph_output",
    "sole_consumer",
    "spatial_dims",
    "walk_back",
    "walk_forward",
]

MAX_HOPS = 12
# Ops that change no value: identity and type casts.
VALUE_OPS = frozenset({"identity", "cast"})
# Ops that only rearrange values: reshape/squeeze/unsqueeze, flatten, transpose.
LAYOUT_OPS = frozenset({"reshape", "flatten", "transpose"})
# Shape-transparent ops including dropout (an identity at inference).
TRANSPARENT_OPS = VALUE_OPS | LAYOUT_OPS | {"dropout"}
# Element-wise ops that are transparent when their other operand is a constant
# (a bias Add after MatMul, a layer-scale Mul).
ELEMENTWISE_CONST_OPS = frozenset({"add", "sub", "mul", "div"})


class Walk(NamedTuple):
    """Where a walk stopped: ``node`` (None at a graph input or the hop limit) and the
    transparent nodes passed on the way, nearest first."""

    node: Node | None
    through: tuple[Node, ...]
    tensor: str | None = None  # the tensor on which the walk stopped

    @property
    def through_ops(self) -> list[str]:
        return [node.source_op for node in self.through]


def data_input(node: Node) -> str | None:
    """The tensor carrying the data into ``node`` (the first input for every canonical op)."""
    return node.inputs[0] if node.inputs and node.inputs[0] else None


def constant_operand(graph: ModelGraph, node: Node) -> tuple[str, str] | None:
    """For a binary element-wise node with exactly one constant operand: (data, constant)."""
    if node.op not in ELEMENTWISE_CONST_OPS or len(node.inputs) != 2:
        return None
    first, second = node.inputs
    if is_param(graph, second) and not is_param(graph, first):
        return first, second
    if is_param(graph, first) and not is_param(graph, second) and node.op in ("add", "mul"):
        return second, first
    return None


def is_param(graph: ModelGraph, tensor: str | None) -> bool:
    """True when ``tensor`` is a known parameter or constant (without loading its value)."""
    return bool(tensor) and tensor in graph.params


def _passable_input(
    graph: ModelGraph,
    node: Node,
    through: frozenset[str],
    constants: bool,
    accept: Callable[[Node], bool] | None = None,
) -> str | None:
    if accept is not None and not accept(node):
        return None
    if node.op in through:
        inputs = node.inputs
        return inputs[0] if inputs and inputs[0] else None
    if constants and node.op in ELEMENTWISE_CONST_OPS:
        pair = constant_operand(graph, node)
        if pair is not None:
            return pair[0]
    return None


def walk_back(
    graph: ModelGraph,
    tensor: str | None,
    through: Iterable[str] = TRANSPARENT_OPS,
    *,
    constants: bool = False,
    accept: Callable[[Node], bool] | None = None,
    max_hops: int = MAX_HOPS,
) -> Walk:
    """The nearest producer of ``tensor`` that is not transparent.

    ``through`` names the canonical ops to see through; with ``constants`` an element-wise
    op with one constant operand (bias Add, scale Mul) is seen through as well; ``accept``
    can veto seeing through a particular node (e.g. a reshape that moves the last axis).
    """
    ops = through if type(through) is frozenset else frozenset(through)
    passed: list[Node] = []
    current = tensor
    producer = graph.producer
    for _ in range(max_hops):
        node = producer(current)
        if node is None:
            return Walk(None, tuple(passed), current)
        upstream = _passable_input(graph, node, ops, constants, accept)
        if upstream is None:
            return Walk(node, tuple(passed), current)
        passed.append(node)
        current = upstream
    return Walk(None, tuple(passed), current)


def walk_forward(
    graph: ModelGraph,
    tensor: str | None,
    through: Iterable[str] = TRANSPARENT_OPS,
    *,
    constants: bool = False,
    max_hops: int = MAX_HOPS,
) -> Iterator[Walk]:
    """Every nearest non-transparent consumer reachable from ``tensor``, branch by branch.

    Each branch stops at its first consumer not in ``through`` (yielded with the
    transparent nodes passed, nearest first); a branch ending at a graph output without
    such a consumer yields ``Walk(None, …, tensor)``. Bounded by ``max_hops`` per branch.
    """
    ops = through if type(through) is frozenset else frozenset(through)
    stack: list[tuple[str, tuple[Node, ...]]] = [(tensor, ())] if tensor else []
    seen: set[str] = set()
    tensors, nodes = graph.tensors, graph.nodes
    while stack:
        current, passed = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        record = tensors.get(current)
        ids = dict.fromkeys(record.consumers) if record is not None else ()
        if (record is not None and record.is_graph_output) or not ids:
            yield Walk(None, passed, current)
        for node_id in ids:
            node = nodes[node_id]
            passable = _passable_input(graph, node, ops, constants)
            if passable == current and len(passed) < max_hops and node.outputs:
                stack.extend((out, (*passed, node)) for out in node.outputs if out)
            else:
                yield Walk(node, passed, current)


def is_graph_output(graph: ModelGraph, tensor: str | None) -> bool:
    record = graph.tensors.get(tensor or "")
    return record is not None and record.is_graph_output


def reaches_graph_output(
    graph: ModelGraph, tensor: str | None, through: Iterable[str] = TRANSPARENT_OPS
) -> bool:
    """True when ``tensor`` is, or becomes through transparent ops only, a graph output."""
    return any(
        walk.node is None and is_graph_output(graph, walk.tensor)
        for walk in walk_forward(graph, tensor, through)
    )


def sole_consumer(graph: ModelGraph, tensor: str | None) -> Node | None:
    """The only consumer of ``tensor``; None if it has several, none, or is a graph output."""
    consumers = graph.consumers(tensor)
    if len(consumers) != 1 or is_graph_output(graph, tensor):
        return None
    return consumers[0]


def spatial_dims(graph: ModelGraph, tensor: str | None) -> tuple | None:
    """The dims after (N, C) of a tensor of rank >= 3, or None when unknown or rank < 3."""
    shape = graph.shape(tensor)
    if shape is None or len(shape) < 3:
        return None
    return tuple(shape[2:])


def dropout_ratio(graph: ModelGraph, node: Node) -> float | None:
    """The drop probability of a dropout node (ONNX: input 1 or ``ratio``; torch: ``p``).

    None when it is computed at run time.
    """
    if len(node.inputs) > 1 and node.inputs[1]:
        value = graph.param(node.inputs[1])
        if value is None or np.size(value) != 1:
            return None
        return float(np.asarray(value, dtype=np.float64).reshape(()))
    for key in ("p", "ratio"):
        if key in node.attrs and node.attrs[key] is not None:
            return float(node.attrs[key])
    return 0.5  # the ONNX and PyTorch default


def _is_global_pool(graph: ModelGraph, node: Node) -> bool:
    if node.op != "pool":
        return False
    if str(node.attrs.get("kind", "")).startswith("global"):
        return True
    dims = spatial_dims(graph, node.outputs[0] if node.outputs else None)
    return bool(dims) and all(d == 1 for d in dims)


def _collapses_to_features(graph: ModelGraph, node: Node) -> bool:
    """Flatten (N, C, H, W) -> (N, C*H*W): the feature map becomes a feature vector."""
    before = graph.shape(data_input(node))
    if node.op == "flatten":
        return node.attrs.get("axis", 1) == 1 and (before is None or len(before) >= 3)
    after = graph.shape(node.outputs[0]) if node.op == "reshape" else None
    if before is None or after is None or len(before) < 3 or len(after) != 2:
        return False
    rest = before[1:]
    if not all(isinstance(d, int) for d in (*rest, after[1])):
        return False
    return after[1] == int(np.prod(rest, dtype=np.int64))


def pooled_tensors(graph: ModelGraph) -> frozenset[str]:
    """Tensors that carry globally pooled or flattened features (one pass in graph order).

    A tensor is pooled when a global pool produced it, when it has rank >= 3 with every
    spatial dim 1, when a flatten collapsed a feature map into a vector, or when every
    non-constant input of its producer is pooled (SE branches, classifier heads).
    Cached on the graph.
    """
    cached = graph.cache.pooled_tensors
    if cached is not None:
        return cached
    pooled: set[str] = set()
    params, shape = graph.params, graph.shape
    for node in graph.nodes:
        outputs = [name for name in node.outputs if name]
        if not outputs:
            continue
        data = [name for name in node.inputs if name and name not in params]
        op = node.op
        if (
            (op == "pool" and _is_global_pool(graph, node))
            or (op in ("flatten", "reshape") and _collapses_to_features(graph, node))
            or (data and all(name in pooled for name in data))
        ):
            pooled.update(outputs)
            continue
        for name in outputs:
            dims = shape(name)
            if dims is not None and len(dims) >= 3 and all(d == 1 for d in dims[2:]):
                pooled.add(name)
    result = graph.cache.pooled_tensors = frozenset(pooled)
    return result
