"""Structural checks run before any rule: cycles, dangling inputs, doubly produced tensors.

A model file can describe a graph no runtime accepts: a node consuming its own output
through a loop of edges, a tensor nobody produces, two nodes writing the same tensor, a
BatchNormalization with the wrong number of inputs. None of this may hang or crash a
rule, and none of it may pass silently: each problem becomes one BN901 naming the nodes
or tensors involved. Everything here is linear in the size of the graph (an iterative
Kahn pass, then an iterative Tarjan pass over what Kahn could not order) and never
recurses, so a 50,000-node cycle costs what a 50,000-node chain does.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from bnlint.diagnostics import diagnostic
from bnlint.findings import Finding
from bnlint.graph import ModelGraph

MAX_LISTED = 20  # names shown per problem; the evidence says how many there were
MAX_CYCLES = 10
ONNX_BN_INPUTS = 5  # X, scale, B, input_mean, input_var in every opset
# Formats whose file declares every edge. Graphs recovered from a live or scripted module
# keep opaque calls (a list-returning ``aten::chunk``) out, so a missing producer there
# is the reader's gap, not the file's.
DECLARED_GRAPH_FORMATS = frozenset({"onnx", "pt2"})


@dataclass
class StructureProblems:
    """What is wrong with a graph's structure (node ids and tensor names)."""

    cycles: list[list[int]] = field(default_factory=list)  # strongly connected node sets
    in_cycle_count: int = 0
    dangling: dict[str, list[int]] = field(default_factory=dict)  # tensor -> consumer ids
    multiply_produced: dict[str, list[int]] = field(default_factory=dict)
    malformed: list[tuple[int, str]] = field(default_factory=list)  # (node id, problem)

    def __bool__(self) -> bool:
        return bool(self.cycles or self.dangling or self.multiply_produced or self.malformed)


def _successors(graph: ModelGraph, node_id: int) -> list[int]:
    """Consumer ids of the tensors ``node_id`` produces, one per edge (self-loops included)."""
    tensors = graph.tensors
    found: list[int] = []
    for name in graph.node(node_id).outputs:
        record = tensors.get(name) if name else None
        if record is not None and record.producer == node_id:
            found.extend(record.consumers)
    return found


def _unordered_nodes(graph: ModelGraph) -> list[int]:
    """Kahn's algorithm on the tensor table: the ids no topological order reaches."""
    indegree = [0] * len(graph.nodes)
    for record in graph.tensors.values():
        if record.producer is not None:
            for consumer in record.consumers:
                indegree[consumer] += 1
    ready = [node_id for node_id, degree in enumerate(indegree) if degree == 0]
    while ready:
        for consumer in _successors(graph, ready.pop()):
            indegree[consumer] -= 1
            if indegree[consumer] == 0:
                ready.append(consumer)
    return [node_id for node_id, degree in enumerate(indegree) if degree > 0]


def _cycles(successors: dict[int, list[int]], candidates: list[int]) -> list[list[int]]:
    """Strongly connected components with a cycle (iterative Tarjan over ``candidates``)."""
    allowed = set(candidates)
    index: dict[int, int] = {}
    low: dict[int, int] = {}
    on_stack: set[int] = set()
    stack: list[int] = []
    found: list[list[int]] = []

    def visit(node_id: int) -> tuple[int, Iterator[int]]:
        index[node_id] = low[node_id] = len(index)
        stack.append(node_id)
        on_stack.add(node_id)
        return node_id, iter(successors[node_id])

    for root in candidates:
        if root in index:
            continue
        work = [visit(root)]
        while work:
            node_id, targets = work[-1]
            for target in targets:
                if target not in allowed:
                    continue
                if target not in index:
                    work.append(visit(target))
                    break
                if target in on_stack:
                    low[node_id] = min(low[node_id], index[target])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node_id])
                if low[node_id] == index[node_id]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node_id:
                            break
                    if len(component) > 1 or node_id in successors[node_id]:
                        found.append(sorted(component))
    return found


def _defined_in_enclosing_body(name: str, subgraphs: Iterable[str | None]) -> bool:
    """A body's formal input (``<body path>::<name>``) used in that body or one nested in it."""
    for path in subgraphs:
        if not path:
            continue
        cut = len(path)
        while cut > 0:
            if name.startswith(path[:cut] + "::"):
                return True
            cut = path.rfind("/", 0, cut)
    return False


def find_problems(graph: ModelGraph) -> StructureProblems:
    """Every structural problem of ``graph`` (cheap: one pass over nodes and tensors)."""
    problems = StructureProblems()
    if not graph.facts.has_edges:
        return problems
    nodes, tensors, params = graph.nodes, graph.tensors, graph.params
    for node in nodes:
        for name in node.outputs:
            record = tensors.get(name) if name else None
            if record is not None and record.producer != node.id:
                problems.multiply_produced.setdefault(name, []).append(node.id)
        if node.source_op == "BatchNormalization" and len(node.inputs) != ONNX_BN_INPUTS:
            problems.malformed.append(
                (node.id, f"has {len(node.inputs)} inputs; BatchNormalization takes 5")
            )
    for name, writers in problems.multiply_produced.items():
        writers.append(tensors[name].producer)  # the last writer, the one rules see
    declared = graph.facts.format in DECLARED_GRAPH_FORMATS
    for name, record in tensors.items() if declared else ():
        if (
            not record.consumers
            or record.producer is not None
            or record.is_graph_input
            or record.is_param
            or name in params
        ):
            continue
        consumers = list(dict.fromkeys(record.consumers))
        subgraphs = dict.fromkeys(nodes[i].subgraph for i in consumers)
        if not _defined_in_enclosing_body(name, subgraphs):
            problems.dangling[name] = consumers
    unordered = _unordered_nodes(graph)
    if unordered:
        successors = {node_id: _successors(graph, node_id) for node_id in unordered}
        problems.cycles = _cycles(successors, unordered)
        problems.in_cycle_count = sum(len(cycle) for cycle in problems.cycles)
    return problems


def _names(graph: ModelGraph, ids: Iterable[int]) -> list[str]:
    return [graph.node(node_id).display_name for node_id in ids]


def _shown(names: list[str]) -> str:
    text = ", ".join(repr(name) for name in names[:5])
    return text + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def structure_findings(graph: ModelGraph, docs_url: str) -> list[Finding]:
    """One BN901 per kind of structural problem, naming the nodes or tensors involved."""
    problems = find_problems(graph)
    if not problems:
        return []
    found = []

    def report(message: str, node: str | None, evidence: dict) -> None:
        found.append(
            diagnostic(
                "BN901", message, file=graph.path, node=node, evidence=evidence, docs_url=docs_url
            )
        )

    if problems.cycles:
        cycles = [_names(graph, cycle[:MAX_LISTED]) for cycle in problems.cycles[:MAX_CYCLES]]
        first = cycles[0]
        report(
            f"the graph has {len(problems.cycles)} cycle(s) through "
            f"{problems.in_cycle_count} node(s), e.g. {_shown(first)}; a model graph must be "
            "acyclic, so results on these nodes are partial",
            first[0],
            {"cycles": cycles, "nodes_in_cycles": problems.in_cycle_count},
        )
    if problems.dangling:
        names = sorted(problems.dangling)
        consumers = {
            name: _names(graph, problems.dangling[name][:MAX_LISTED]) for name in names[:MAX_LISTED]
        }
        report(
            f"{len(names)} tensor(s) are consumed but never produced, nor graph inputs or "
            f"parameters: {_shown(names)}",
            consumers[names[0]][0],
            {"dangling": names[:MAX_LISTED], "consumers": consumers, "count": len(names)},
        )
    if problems.multiply_produced:
        names = sorted(problems.multiply_produced)
        producers = {
            name: _names(graph, problems.multiply_produced[name][:MAX_LISTED])
            for name in names[:MAX_LISTED]
        }
        report(
            f"{len(names)} tensor(s) are produced by several nodes: {_shown(names)}; "
            "rules see only the last producer",
            producers[names[0]][-1],
            {"multiply_produced": producers, "count": len(names)},
        )
    for node_id, problem in problems.malformed[:MAX_LISTED]:
        node = graph.node(node_id)
        report(
            f"{node.source_op} {node.display_name!r} {problem}; the file is malformed",
            node.display_name,
            {"node": node.display_name, "inputs": len(node.inputs)},
        )
    return found
