"""Tensor-name scoping for subgraph bodies and module paths from exporter metadata."""

from __future__ import annotations

import ast

from onnx import NodeProto


class Scope:
    """Names defined by one graph body; inner bodies may shadow outer names.

    Top-level names map to themselves; names defined in a body get ``<path>::<name>``.
    """

    def __init__(self, parent: Scope | None, path: str) -> None:
        self.parent = parent
        self.path = path
        self.names: dict[str, str] = {}

    def define(self, name: str) -> str:
        key = name if self.parent is None else f"{self.path}::{name}"
        self.names[name] = key
        return key

    def key(self, name: str) -> str:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return name


def node_scope(node: NodeProto) -> str | None:
    """The PyTorch module path the exporter recorded for ``node``, if any.

    torch's dynamo exporter stores ``pkg.torch.onnx.name_scopes`` (a Python list literal of
    module names from the root) on every node; the last entry is the module path.
    """
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                names = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            if isinstance(names, list):
                parts = [str(name) for name in names if name]
                return parts[-1] if parts else None
    return None
