"""Which inputs reach a node, and whether the path from them is affine.

The preprocessing diagnosis (:mod:`bnlint.drift.diagnose`) computes a correction's exact
effect on a BN's statistics when everything between the model's inputs and the BN is
affine in the input: convolutions, linear layers, average pooling, padding, reshapes, sums
and products with constants.
"""

from __future__ import annotations

from bnlint.drift.sites import ancestors_of
from bnlint.graph import ModelGraph, Node

_LINEAR_OPS = {
    "conv",
    "conv_transpose",
    "linear",
    "pad",
    "reshape",
    "flatten",
    "transpose",
    "identity",
    "cast",
    "dropout",
    "concat",
    "split",
    "add",
    "sub",
}
_LINEAR_OTHER = {"Unsqueeze", "Squeeze", "Slice", "Expand", "Gather", "Neg"}


def reaches(graph: ModelGraph, node: Node, name: str) -> bool:
    """Whether the tensor ``name`` (a model input) is read by ``node`` or anything above it."""
    upstream = ancestors_of(graph, node)
    return any(c.id in upstream or c.id == node.id for c in graph.consumers(name))


def is_affine_path(graph: ModelGraph, node: Node) -> bool:
    """Whether every operation between the inputs and ``node``'s input is affine."""
    for node_id in ancestors_of(graph, node):
        upstream = graph.node(node_id)
        if upstream.op in ("add", "sub", "mul", "div", "matmul"):
            varying = [n for n in upstream.inputs if n and not graph.is_constant(n)]
            if upstream.op in ("mul", "div", "matmul") and len(varying) > 1:
                return False
            if upstream.op == "div" and upstream.inputs[0] not in varying:
                return False
            continue
        if upstream.op == "pool":
            if "max" in upstream.source_op.lower() or "lp" in upstream.source_op.lower():
                return False
            continue
        if upstream.op == "pad" and str(upstream.attrs.get("mode", "constant")) != "constant":
            continue  # reflect/edge padding is linear too
        if upstream.op in _LINEAR_OPS or upstream.source_op in _LINEAR_OTHER:
            continue
        return False
    return True
