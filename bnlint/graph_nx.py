"""The networkx view of a :class:`~bnlint.graph.ModelGraph` (``graph.nx``).

Kept apart from the graph so that linting never imports networkx: the built-in rules
run on the graph's precomputed indices, and the view is built on first use by a rule
that asks for path, ancestor or pattern queries (docs/plugins.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import networkx

if TYPE_CHECKING:
    from bnlint.graph import ModelGraph

# The Node fields each networkx node carries as attributes (besides ``node`` itself).
NODE_FIELDS = (
    "op",
    "source_op",
    "name",
    "scope",
    "attrs",
    "inputs",
    "outputs",
    "subgraph",
    "location",
)


def networkx_view(graph: ModelGraph) -> networkx.MultiDiGraph:
    """A frozen ``MultiDiGraph``: node ids with the node's fields, and one edge
    producer -> consumer per tensor, keyed by its name, with ``tensor``, ``shape`` and
    ``dtype``."""
    view = networkx.MultiDiGraph(path=graph.path, format=graph.facts.format)
    view.add_nodes_from(
        (node.id, {**{key: getattr(node, key) for key in NODE_FIELDS}, "node": node})
        for node in graph.nodes
    )
    view.add_edges_from(
        (
            record.producer,
            consumer,
            name,
            {"tensor": name, "shape": graph.shape(name), "dtype": graph.dtype(name)},
        )
        for name, record in graph.tensors.items()
        if record.producer is not None
        for consumer in dict.fromkeys(record.consumers)
    )
    return networkx.freeze(view)
