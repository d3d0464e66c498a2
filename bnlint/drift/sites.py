"""Which BatchNorms can be compared with data, and in which order they depend on each other.

A BN is analysed when it normalises with constant running statistics in inference: not in
training mode (BN003), with running statistics (BN004), its mean and variance readable,
finite and of one length, in the top-level graph (If/Loop bodies are not instrumented).
Every other BN is listed with the reason, never silently dropped.

``depth`` is the number of analysed BNs on the longest path from the inputs to a BN,
itself included: depth-1 BNs see nothing another BN normalised, a depth-2 BN sees the
output of at least one depth-1 BN, and so on. Re-estimation proceeds depth by depth, so
each BN is measured on inputs already normalised with re-estimated statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bnlint.graph import ModelGraph, Node


@dataclass
class BnSite:
    """One analysed BN and its running statistics (float64, per channel)."""

    node: Node
    mean: np.ndarray
    var: np.ndarray
    eps: float
    scale: np.ndarray  # gamma (ones when absent)
    bias: np.ndarray  # beta (zeros when absent)
    depth: int = 1

    @property
    def id(self) -> int:
        return self.node.id

    @property
    def channels(self) -> int:
        return int(self.mean.size)

    @property
    def name(self) -> str:
        return self.node.display_name


@dataclass
class Sites:
    analysed: list[BnSite]
    skipped: list[tuple[Node, str]]


def _skip_reason(graph: ModelGraph, bn: Node) -> str | None:
    if bn.subgraph is not None:
        return "inside an If/Loop/Scan body"
    if bn.attrs.get("training"):
        return "in training mode (normalises with batch statistics)"
    if bn.attrs.get("track_running_stats") is False:
        return "has no running statistics"
    for role in ("mean", "var"):
        name = bn.input(role)
        if name is None:
            return f"has no running {role}"
        if not graph.is_constant(name):
            return f"its running {role} is not a constant parameter"
    return None


def find_sites(graph: ModelGraph) -> Sites:
    """The analysed BNs in graph order, with depths, and the skipped ones with reasons."""
    from bnlint.analysis.bn_params import bn_params

    analysed, skipped = [], []
    for bn in graph.nodes_of("batch_norm"):
        reason = _skip_reason(graph, bn)
        if reason is None:
            params = bn_params(graph, bn)
            reason = _params_problem(params)
        if reason is not None:
            skipped.append((bn, reason))
            continue
        channels = params.mean.size
        scale = params.scale if params.scale is not None else np.ones(channels)
        bias = params.bias if params.bias is not None else np.zeros(channels)
        analysed.append(
            BnSite(
                bn,
                np.array(params.mean, dtype=np.float64),
                np.array(params.var, dtype=np.float64),
                params.eps,
                np.array(scale, dtype=np.float64),
                np.array(bias, dtype=np.float64),
            )
        )
    _assign_depths(graph, analysed)
    return Sites(analysed, skipped)


def _params_problem(params) -> str | None:
    if params.unreadable:
        role, why = next(iter(params.unreadable.items()))
        return f"its {role} cannot be read ({why})"
    if params.mean is None or params.var is None:
        return "has no running statistics"
    sizes = {params.mean.size, params.var.size}
    sizes |= {p.size for p in (params.scale, params.bias) if p is not None}
    if len(sizes) != 1 or params.mean.size == 0:
        return "its parameters disagree in length (BN010)"
    if not (np.isfinite(params.mean).all() and np.isfinite(params.var).all()):
        return "its running statistics are not finite (BN006)"
    if (params.var + params.eps <= 0).any():
        return "its running variance + eps is not positive (BN006)"
    return None


def _assign_depths(graph: ModelGraph, sites: list[BnSite]) -> None:
    """Longest-path BN depth over a topological order of the whole graph."""
    site_ids = {site.id for site in sites}
    depth: dict[int, int] = {}
    for node in topological(graph):
        below = max((depth.get(p.id, 0) for p in graph.predecessors(node)), default=0)
        depth[node.id] = below + (1 if node.id in site_ids else 0)
    for site in sites:
        site.depth = max(depth.get(site.id, 1), 1)


def topological(graph: ModelGraph) -> list[Node]:
    """Nodes producers-first (Kahn's algorithm; graph order breaks ties; a node on a cycle,
    which the engine reports as BN901, is left out)."""
    import heapq

    waiting = {node.id: len(graph.predecessors(node)) for node in graph.nodes}
    ready = [node_id for node_id, count in waiting.items() if count == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        node = graph.node(heapq.heappop(ready))
        order.append(node)
        for consumer in graph.successors(node):
            waiting[consumer.id] -= 1
            if waiting[consumer.id] == 0:
                heapq.heappush(ready, consumer.id)
    return order


def ancestors_of(graph: ModelGraph, node: Node) -> set[int]:
    """Ids of every node upstream of ``node``."""
    seen: set[int] = set()
    stack = [p.id for p in graph.predecessors(node)]
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        stack.extend(p.id for p in graph.predecessors(graph.node(node_id)) if p.id not in seen)
    return seen
