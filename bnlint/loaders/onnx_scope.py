"""Tensor-name scoping for subgraph bodies and module paths from exporter metadata."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

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
        if self.parent is None:
            return name  # top-level names map to themselves; nothing to remember
        key = f"{self.path}::{name}"
        self.names[name] = key
        return key

    def key(self, name: str) -> str:
        scope: Scope | None = self
        while scope is not None:
            if name in scope.names:
                return scope.names[name]
            scope = scope.parent
        return name


@dataclass(frozen=True)
class ExporterMetadata:
    """What torch's dynamo exporter recorded about the module behind a node."""

    module_path: str | None = None
    source_file: str | None = None
    source_line: int | None = None
    exported_in_training: bool = False


def exporter_metadata(node: NodeProto) -> ExporterMetadata:
    """Module path, user source line and train-mode export marker from node metadata.

    ``pkg.torch.onnx.name_scopes`` is a list literal of module paths from the root, ending
    with the FX node's own name; ``pkg.torch.onnx.stack_trace`` lists frames outermost
    first, so the source line is its last frame outside torch: the user's line that
    called the module, as the PyTorch front end reports it (a line inside torch helps
    nobody, so a trace entirely inside torch gives none). A BN exported from a module in
    train mode keeps the name of the functional batch-norm op in ``namespace`` even though
    the exporter gave it eval semantics.
    """
    if not node.metadata_props:
        return ExporterMetadata()
    props = {prop.key: prop.value for prop in node.metadata_props}
    module_path = None
    scopes = props.get("pkg.torch.onnx.name_scopes")
    names = last_two_names(scopes) if scopes else None
    if names is not None and names[0]:
        module_path = names[0]
    source_file, source_line = None, None
    trace = props.get("pkg.torch.onnx.stack_trace")
    if trace:
        from bnlint.loaders.torch_aten import user_frame

        frame = user_frame(trace)
        if frame is not None:
            source_file, source_line = frame
    training = "_native_batch_norm_legit_functional" in props.get("namespace", "")
    return ExporterMetadata(module_path, source_file, source_line, training)


def _literal_ending(text: str, end: int) -> int | None:
    """Start of the string literal whose closing quote is ``text[end - 1]``, or None.

    Linear in the literal: each backslash before a quote is looked at once.
    """
    if end < 2 or text[end - 1] not in "'\"":
        return None
    quote, position = text[end - 1], end - 2
    while position >= 0:
        position = text.rfind(quote, 0, position + 1)
        if position < 0:
            return None
        slash = position - 1
        while slash >= 0 and text[slash] == "\\":
            slash -= 1
        if (position - 1 - slash) % 2 == 0:
            return position
        position = slash
    return None


def last_two_names(text: str) -> tuple[str, str] | None:
    """The last two entries of a Python list literal of strings (``name_scopes``), or None.

    Only the end of the list is read: the two literals before the closing bracket are found
    from the end and evaluated alone, so the cost is theirs, whatever the list's length
    (``ast.literal_eval`` of a 5 MB list builds an AST of gigabytes).
    """
    body = text.strip()
    if len(body) < 2 or body[0] != "[" or body[-1] != "]":
        return None
    found: list[str] = []
    end = len(body) - 1
    while end > 0 and body[end - 1].isspace():
        end -= 1
    if body[end - 1 : end] == ",":  # a trailing comma
        end -= 1
        while end > 0 and body[end - 1].isspace():
            end -= 1
    for position in range(2):
        start = _literal_ending(body, end)
        if start is None:
            return None
        found.insert(0, body[start:end])
        end = start
        while end > 0 and body[end - 1].isspace():
            end -= 1
        if position == 0:
            if body[end - 1 : end] != ",":
                return None
            end -= 1
            while end > 0 and body[end - 1].isspace():
                end -= 1
    try:
        first, second = (ast.literal_eval(item) for item in found)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return (first, second) if isinstance(first, str) and isinstance(second, str) else None


_LEGACY_NAME = re.compile(r"^/(.+)/[A-Za-z][A-Za-z0-9]*(?:_\d+)?$")


def legacy_module_path(node_name: str) -> str | None:
    """Module path from a TorchScript-exporter node name (``/layer1/layer1.0/bn1/BatchNorm``).

    Each scope component is an attribute name, except that children of containers repeat
    their parent's name (``layer1.0`` under ``layer1``); joining the components with that
    rule gives the module path (``layer1.0.bn1``).
    """
    match = _LEGACY_NAME.match(node_name)
    if match is None:
        return None
    parts: list[str] = []
    for component in match.group(1).split("/"):
        if parts and component.startswith(parts[-1].rsplit(".", 1)[-1] + "."):
            parts[-1] = (
                parts[-1].rsplit(".", 1)[0] + "." + component if "." in parts[-1] else component
            )
        else:
            parts.append(component)
    return ".".join(parts) or None
