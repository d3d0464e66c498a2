"""The small graph neighbourhood of each finding's node, for the HTML report's inline SVG.

For every node a finding names: the nodes producing its inputs and the nodes consuming its
outputs (producer → BN → consumer), with the shape of the tensor on each edge where it is
known (``1×64×56×56``), read from the graph in the process that linted the model. Stored
in ``ModelResult.report_data.neighborhood`` keyed by node id (``Finding.order``) as plain
data; long fan-ins and fan-outs are cut with a count.
"""

from __future__ import annotations

from typing import Any

from bnlint.graph import ModelGraph, Node

MAX_SIDE = 3


def _describe(node: Node) -> dict[str, Any]:
    return {"id": node.id, "name": node.display_name, "op": node.source_op, "kind": node.op}


def shape_text(graph: ModelGraph, source: Node, target: Node) -> str | None:
    """The shape of the first tensor ``source`` passes to ``target`` (``1×64×56×56``)."""
    wanted = set(target.inputs)
    for name in source.outputs:
        if name and name in wanted:
            try:
                shape = graph.shape(name)
            except Exception:  # shape inference failing costs a label, nothing more
                return None
            if shape is None:
                return None
            return "×".join("?" if dim is None else str(dim) for dim in shape) or "scalar"
    return None


def _side(
    graph: ModelGraph, node: Node, nodes: list[Node], incoming: bool
) -> tuple[list[dict[str, Any]], int]:
    unique = list({other.id: other for other in nodes}.values())
    described = []
    for other in unique[:MAX_SIDE]:
        entry = _describe(other)
        entry["shape"] = (
            shape_text(graph, other, node) if incoming else shape_text(graph, node, other)
        )
        described.append(entry)
    return described, max(0, len(unique) - MAX_SIDE)


def neighborhood(graph: ModelGraph, node: Node) -> dict[str, Any]:
    producers, more_in = _side(graph, node, graph.predecessors(node), incoming=True)
    consumers, more_out = _side(graph, node, graph.successors(node), incoming=False)
    return {
        "center": _describe(node),
        "producers": producers,
        "consumers": consumers,
        "more_producers": more_in,
        "more_consumers": more_out,
    }


def neighborhoods(graph: ModelGraph, node_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The neighbourhood of each node id (ids outside the graph are skipped)."""
    found = {}
    for node_id in dict.fromkeys(node_ids):
        if 0 <= node_id < len(graph):
            found[node_id] = neighborhood(graph, graph.node(node_id))
    return found
