"""Names must be Unicode text before any rule or reporter sees them.

protobuf hands back ``bytes`` for a string field holding invalid UTF-8, and JSON may encode
lone surrogates; neither can be printed, written as UTF-8, compared with a ``str`` or
concatenated into a key. A model with such a name is refused as malformed. One ``join``
checks many names at C speed (it raises on anything that is not ``str``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from bnlint.loaders.files import LoadError

if TYPE_CHECKING:
    from bnlint.graph import ModelGraph

_SURROGATE = re.compile("[\ud800-\udfff]")
_GRAPH_ATTRIBUTES = (5, 10)  # AttributeProto.GRAPH, AttributeProto.GRAPHS


def _check(path: str, texts: list[Any], what: str) -> None:
    try:
        joined = "\0".join(texts)
    except TypeError:
        bad = next(text for text in texts if type(text) is not str)
        raise LoadError(path, f"{what} {bad!r} is not valid UTF-8 text") from None
    if not joined.isascii() and _SURROGATE.search(joined):
        bad = next(text for text in texts if _SURROGATE.search(text))
        raise LoadError(path, f"{what} {bad!r} holds an unpaired surrogate") from None


def check_graph_strings(graph: ModelGraph) -> None:
    """Node, tensor, parameter and attribute names and source locations of ``graph``."""
    texts: list[Any] = [*graph.tensors, *graph.params.names()]
    for node in graph.nodes:
        texts += (node.name, node.source_op, node.scope or "", node.subgraph or "")
        texts += (*node.inputs, *node.outputs, *node.attrs)
        if node.location is not None and node.location.source_file:
            texts.append(node.location.source_file)
    _check(graph.path, texts, "name")
    model = graph.source.onnx_model
    if model is not None:
        _check(graph.path, list(_value_names([model.graph])), "value name")


def _value_names(graphs: Iterable[Any]) -> Iterable[str]:
    """Input, output and value_info names of ONNX graphs and every body nested in them
    (read lazily by shape inference), and the tensor names of body nodes (the ModelGraph
    holds those formatted into ``<body>::<name>`` keys, where bytes would hide as text)."""
    stack = [(graph, False) for graph in graphs]
    while stack:
        graph, is_body = stack.pop()
        for values in (graph.input, graph.output, graph.value_info):
            yield from [value.name for value in values]
        for node in graph.node:
            if is_body:
                yield from node.input
                yield from node.output
            if len(node.attribute):
                for attribute in node.attribute:
                    if attribute.type == _GRAPH_ATTRIBUTES[0]:
                        stack.append((attribute.g, True))
                    elif attribute.type == _GRAPH_ATTRIBUTES[1]:
                        stack.extend((body, True) for body in attribute.graphs)
