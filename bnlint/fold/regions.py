"""Cut two versions of a model into regions bordered by tensors they share, and pair them.

A *border* is a data tensor (computed from the graph's inputs) whose name exists, as a
data tensor, in both models. Between borders, the original's nodes fall into connected
*regions*; for each, the folded model's nodes that compute the region's output borders
from its input borders (plus any constant arithmetic feeding them) are collected. A
region whose nodes and constants are unchanged needs no check; every other region is
evaluated on both sides (:mod:`bnlint.fold.regional`). Bodies of If/Loop/Scan nodes are
scopes of their own, paired by the control node's first output and the attribute name,
so a fold inside one branch is checked whatever the condition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto

NON_CONSTANT_OPS = frozenset(
    {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
     "Bernoulli", "If", "Loop", "Scan"}
)  # fmt: skip
MAX_REGION_NODES = 64  # a region growing past this is not a fold any more: not evaluated


def bodies(node: NodeProto) -> Iterator[tuple[str, int, GraphProto]]:
    for attribute in node.attribute:
        if attribute.type == AttributeProto.GRAPH:
            yield attribute.name, 0, attribute.g
        elif attribute.type == AttributeProto.GRAPHS:
            for number, body in enumerate(attribute.graphs):
                yield attribute.name, number, body


@dataclass(eq=False)
class Scope:
    """One graph (the model's or a body) with its tensor tables."""

    graph: GraphProto
    path: tuple  # () at the top level, then one (control output, attribute, number) per level
    key: str  # the loader's prefix for names defined here ("" at the top level)
    parent: Scope | None
    children: list[Scope] = field(default_factory=list)
    producer: dict[str, int] = field(default_factory=dict)
    consumers: dict[str, list[int]] = field(default_factory=dict)
    initializers: dict[str, TensorProto] = field(default_factory=dict)
    inputs: set[str] = field(default_factory=set)
    constant: set[str] = field(default_factory=set)  # initializers and constant-only outputs
    data: set[str] = field(default_factory=set)

    def owner(self, name: str) -> Scope | None:
        """The scope (this or an enclosing one) that defines ``name``."""
        scope: Scope | None = self
        while scope is not None:
            if name in scope.producer or name in scope.initializers or name in scope.inputs:
                return scope
            scope = scope.parent
        return None

    def is_constant(self, name: str) -> bool:
        owner = self.owner(name)
        return owner is not None and name in owner.constant

    def is_data(self, name: str) -> bool:
        owner = self.owner(name)
        return owner is not None and name in owner.data

    def param_key(self, name: str) -> str:
        """The loader's parameter name for a constant read here."""
        owner = self.owner(name)
        return name if owner is None or not owner.key else f"{owner.key}::{name}"

    @cached_property
    def outer_names(self) -> frozenset[str]:
        """Names this body (or a body inside it) reads but does not define."""
        defined = set(self.producer) | set(self.initializers) | self.inputs
        read = {name for node in self.graph.node for name in node.input if name}
        for child in self.children:
            read |= child.outer_names
        return frozenset(read - defined)


def body_key(
    parent: str, node: NodeProto, index: int, attribute: str, number: int, many: bool
) -> str:
    """The loader's name for a body (``bnlint.loaders.onnx.body_path``); the rewrite
    indexes bodies by it too."""
    name = node.name or f"<{node.op_type}#{index}>"
    return f"{parent}/{name}.{attribute}{f'[{number}]' if many else ''}".lstrip("/")


class ModelView:
    """A model's scopes and tensor tables."""

    def __init__(self, model: ModelProto) -> None:
        self.model = model
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 1)
        self.scopes: dict[tuple, Scope] = {}
        self._build(model.graph, (), "", None, overridable=model.ir_version >= 4)

    def _build(self, graph: GraphProto, path: tuple, key: str, parent, overridable: bool) -> Scope:
        scope = Scope(graph, path, key, parent)
        self.scopes[path] = scope
        scope.initializers = {t.name: t for t in graph.initializer}
        scope.inputs = {v.name for v in graph.input}
        if parent is None:  # before IR 4 every initializer is listed as an input: a constant
            overridable_inputs = scope.inputs if overridable else set()
            scope.constant = set(scope.initializers) - overridable_inputs
            scope.data = scope.inputs - scope.constant
        else:
            scope.constant = set(scope.initializers)
            scope.data = set(scope.inputs)
        for index, node in enumerate(graph.node):
            for name in node.input:
                if name:
                    scope.consumers.setdefault(name, []).append(index)
            for name in node.output:
                if name:
                    scope.producer[name] = index
            if _constant_node(scope, node):
                scope.constant.update(n for n in node.output if n)
            else:
                scope.data.update(n for n in node.output if n)
            many = any(a.type == AttributeProto.GRAPHS for a in node.attribute)
            for attribute, number, body in bodies(node):
                label = node.output[0] if node.output else f"#{index}"
                child = self._build(
                    body,
                    (*path, (label, attribute, number)),
                    body_key(key, node, index, attribute, number, many),
                    scope,
                    overridable,
                )
                scope.children.append(child)
                for name in child.outer_names:  # the control node reads what its body reads
                    scope.consumers.setdefault(name, []).append(index)
        return scope


def _constant_node(scope: Scope, node: NodeProto) -> bool:
    if node.op_type in NON_CONSTANT_OPS or node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type == "Constant":
        return True
    if node.op_type == "CastLike" and node.input and node.input[0]:
        return scope.is_constant(node.input[0])  # the second input only lends its dtype
    present = [name for name in node.input if name]
    return bool(present) and all(scope.is_constant(name) for name in present)


@dataclass
class Region:
    """Original nodes between borders, and the folded nodes computing the same borders."""

    path: tuple
    nodes: list[int]  # indices in the original scope, graph order, data nodes only
    inputs: list[str]
    outputs: list[str]
    folded: list[int] = field(default_factory=list)  # indices in the folded scope
    problem: str | None = None  # why the folded side could not be delimited


def shared_borders(original: Scope, folded: Scope) -> set[str]:
    """Data tensors both scopes compute or receive (outer names included)."""
    return {name for name in original.data if folded.is_data(name)} | {
        name
        for name in original.outer_names & folded.outer_names
        if original.is_data(name) and folded.is_data(name)
    }


def partition(scope: Scope, shared: set[str]) -> list[Region]:
    """The scope's data nodes in regions (connected through tensors that are not borders)."""
    nodes = [i for i, n in enumerate(scope.graph.node) if not _constant_node_index(scope, i)]
    parent = {i: i for i in nodes}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for name in scope.data:
        if name in shared or name not in scope.producer:
            continue
        source = scope.producer[name]
        for reader in scope.consumers.get(name, []):
            if reader in parent and source in parent:
                parent[find(reader)] = find(source)
    groups: dict[int, list[int]] = {}
    for i in nodes:
        groups.setdefault(find(i), []).append(i)
    return [region_of(scope, sorted(members)) for members in groups.values()]


def region_of(scope: Scope, members: list[int]) -> Region:
    graph_outputs = {v.name for v in scope.graph.output}
    inside = {o for i in members for o in scope.graph.node[i].output if o}
    reads: list[str] = []
    for i in members:
        node = scope.graph.node[i]
        names = list(node.input)
        for _, _, body in bodies(node):
            names += sorted(_body_scope(scope, i, body).outer_names)
        reads += [n for n in names if n and n not in inside and scope.is_data(n)]
    member_set = set(members)
    outputs = [
        name
        for name in sorted(inside & scope.data)
        if name in graph_outputs or any(r not in member_set for r in scope.consumers.get(name, []))
    ]
    return Region(scope.path, members, list(dict.fromkeys(reads)), outputs)


def _body_scope(scope: Scope, index: int, body: GraphProto) -> Scope:
    return next(child for child in scope.children if child.graph is body)


def _constant_node_index(scope: Scope, index: int) -> bool:
    outputs = [o for o in scope.graph.node[index].output if o]
    return bool(outputs) and all(o in scope.constant for o in outputs)


def collect_folded(folded: Scope, region: Region) -> None:
    """Fill ``region.folded``: the folded nodes computing its outputs from its inputs, or
    ``region.problem`` when they read data the original region does not."""
    stop = set(region.inputs)
    seen: set[int] = set()
    stack = list(region.outputs)
    while stack:
        name = stack.pop()
        if name in stop or (folded.is_constant(name) and name not in folded.producer):
            continue
        index = folded.producer.get(name)
        if index is None:
            region.problem = (
                f"the folded model computes it from {name!r}, which the original does not "
                "read there"
            )
            return
        if index in seen:
            continue
        seen.add(index)
        if len(seen) > MAX_REGION_NODES:
            region.problem = f"the folded computation spans more than {MAX_REGION_NODES} nodes"
            return
        node = folded.graph.node[index]
        stack.extend(n for n in node.input if n)
        for _, _, body in bodies(node):
            stack.extend(_body_scope(folded, index, body).outer_names)
    region.folded = sorted(seen)
    region.problem = None


def same_node(a: NodeProto, b: NodeProto) -> bool:
    """Equal but for names and bodies (a rename changes nothing; bodies are scopes)."""
    if (a.op_type, a.domain, list(a.input), list(a.output)) != (
        b.op_type,
        b.domain,
        list(b.input),
        list(b.output),
    ):
        return False
    plain = (AttributeProto.GRAPH, AttributeProto.GRAPHS)
    ours = [x.SerializeToString() for x in a.attribute if x.type not in plain]
    theirs = [x.SerializeToString() for x in b.attribute if x.type not in plain]
    return ours == theirs


def is_unchanged(
    original: Scope,
    folded: Scope,
    region: Region,
    same_constant: Callable[[Scope, Scope, str], bool],
) -> bool:
    ours = [original.graph.node[i] for i in region.nodes]
    theirs = [folded.graph.node[i] for i in region.folded if not _constant_node_index(folded, i)]
    if len(ours) != len(theirs):
        return False
    if not all(same_node(a, b) for a, b in zip(ours, theirs, strict=True)):
        return False
    read = {n for node in ours for n in node.input if n and original.is_constant(n)}
    return all(same_constant(original, folded, name) for name in read)
