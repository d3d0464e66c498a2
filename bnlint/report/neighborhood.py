"""The small graph neighbourhood of each finding's node, for the HTML report's inline SVG.

For every node a finding names: the nodes producing its inputs and the nodes consuming its
outputs (producer → BN → consumer), read from the networkx graph in the process that
linted the model. Stored in ``ModelResult.extras["neighborhood"]`` keyed by node id
(``Finding.order``) as plain data; long fan-ins and fan-outs are cut with a count.
"""

from __future__ import annotations

from typing import Any

from bnlint.graph import ModelGraph, Node

MAX_SIDE = 3


def _describe(node: Node) -> dict[str, Any]:
    return {"id": node.id, "name": node.display_name, "op": node.source_op, "kind": node.op}


def _side(nodes: list[Node]) -> tuple[list[dict[str, Any]], int]:
    unique = list({node.id: node for node in nodes}.values())
    return [_describe(node) for node in unique[:MAX_SIDE]], max(0, len(unique) - MAX_SIDE)


def neighborhood(graph: ModelGraph, node: Node) -> dict[str, Any]:
    producers, more_in = _side(graph.predecessors(node))
    consumers, more_out = _side(graph.successors(node))
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
        if 0 <= node_id < len(graph) and graph.nx.has_node(node_id):
            found[node_id] = neighborhood(graph, graph.node(node_id))
    return found
