"""Cycles, dangling inputs, doubly produced tensors and malformed BN nodes become BN901,
and no rule walks forever on a cyclic graph."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from bnlint.analysis.graph_walks import MAX_HOPS, walk_back, walk_forward
from bnlint.api import lint
from bnlint.config import Settings
from bnlint.engine.structure import find_problems, structure_findings
from bnlint.graph import GraphFacts, ModelGraph
from bnlint.loaders import load_model
from tests.zoo import onnx_zoo
from tests.zoo.onnx_builder import GraphBuilder

REPO = Path(__file__).resolve().parents[1]


def _graph(edges: list[tuple[list[str], list[str]]], fmt: str = "onnx") -> ModelGraph:
    """Nodes ``n0, n1, …`` with the given (inputs, outputs); ``x`` is the graph input."""
    graph = ModelGraph("<test>", GraphFacts(format=fmt))
    graph.tensor("x").is_graph_input = True
    for index, (inputs, outputs) in enumerate(edges):
        graph.add_node("other", "Op", f"n{index}", inputs, outputs)
    return graph.finalize()


def _cycle_names(graph: ModelGraph) -> list[list[str]]:
    return [[graph.node(i).name for i in cycle] for cycle in find_problems(graph).cycles]


def test_an_acyclic_graph_has_no_problems() -> None:
    graph = _graph([(["x"], ["a"]), (["a", "x"], ["b"]), (["a", "b"], ["c"])])
    assert not find_problems(graph)
    assert structure_findings(graph, "https://example.org/") == []


def test_cycles_name_only_their_own_nodes() -> None:
    # n0 feeds a 2-cycle (n1 <-> n2) whose output feeds n3; n4 loops on itself; n5 is
    # downstream of both cycles but on neither.
    graph = _graph(
        [
            (["x"], ["a"]),
            (["a", "c"], ["b"]),
            (["b"], ["c"]),
            (["c", "e"], ["d"]),
            (["e"], ["e"]),
            (["d"], ["f"]),
        ]
    )
    assert sorted(_cycle_names(graph)) == [["n1", "n2"], ["n4"]]
    (finding,) = structure_findings(graph, "https://example.org/")
    assert finding.code == "BN901"
    assert finding.evidence["nodes_in_cycles"] == 3
    assert "2 cycle(s) through 3 node(s)" in finding.message


def test_a_long_cycle_is_found_without_recursion() -> None:
    size = 20_000  # far beyond Python's recursion limit
    edges = [([f"t{i - 1}" if i else f"t{size - 1}"], [f"t{i}"]) for i in range(size)]
    (cycle,) = find_problems(_graph(edges)).cycles
    assert len(cycle) == size


def test_dangling_and_doubly_produced_tensors() -> None:
    graph = _graph([(["x", "ghost"], ["a"]), (["a"], ["b"]), (["x"], ["b"])])
    problems = find_problems(graph)
    assert problems.dangling == {"ghost": [0]}
    assert problems.multiply_produced == {"b": [1, 2]}
    messages = [f.message for f in structure_findings(graph, "https://example.org/")]
    assert any("consumed but never produced" in m and "'ghost'" in m for m in messages)
    assert any("produced by several nodes: 'b'" in m for m in messages)


def test_dangling_is_not_judged_where_the_reader_drops_opaque_calls() -> None:
    graph = _graph([(["x", "ghost"], ["a"])], fmt="torchscript")
    assert not find_problems(graph).dangling


@pytest.mark.parametrize(
    "build", [onnx_zoo.if_branches, onnx_zoo.loop_body, onnx_zoo.scan_body, onnx_zoo.opset7_ir3]
)
def test_subgraph_inputs_and_outer_names_are_not_dangling(build, tmp_path: Path) -> None:
    graph = load_model(str(build(tmp_path)), Settings())
    assert not find_problems(graph)


def test_a_bn_with_three_inputs_is_malformed(tmp_path: Path) -> None:
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 4, 8, 8])
    scale, bias, _, _ = g.bn_params("bn", 4)
    (y,) = g.node("BatchNormalization", [x, scale, bias], name="bn")
    report = lint(g.model([y], infer=False), select=["BN901"])
    (finding,) = report.findings
    assert finding.node == "bn" and "has 3 inputs; BatchNormalization takes 5" in finding.message


def _ring_model() -> onnx.ModelProto:
    """Every transparent op a walk sees through, in one loop with a conv and two BNs."""
    g = GraphBuilder(opset=15)
    x = g.input("x", [2, 4, 8, 8])
    (merged,) = g.node("Add", [x, "ring_end"], name="merge")
    g.channels[merged] = 4
    h = g.bn(g.conv(merged, 4, name="conv"), name="bn1", training=True)
    (h,) = g.node("Identity", [h], name="identity")
    (h,) = g.node("Dropout", [h], name="dropout")
    scale = g.param("scale", np.full((1, 4, 1, 1), 2.0))
    (h,) = g.node("Mul", [h, scale], name="scale")
    (h,) = g.node("Cast", [h], name="cast", to=onnx.TensorProto.FLOAT)
    g.channels[h] = 4
    h = g.bn(h, name="bn2")
    (h,) = g.node("Relu", [h], name="relu")
    g.nodes[-1].output[0] = "ring_end"
    return g.model(["ring_end"], infer=False)


def test_walks_on_a_ring_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "ring.onnx"
    onnx.save(_ring_model(), path)
    graph = load_model(str(path), Settings())
    through = {"identity", "dropout", "cast", "mul", "batch_norm", "conv", "add", "activation"}
    for node in graph.nodes:
        for tensor in node.outputs:
            walk = walk_back(graph, tensor, through, constants=True)
            assert len(walk.through) <= MAX_HOPS
            assert sum(1 for _ in walk_forward(graph, tensor, through, constants=True)) < 100


def test_every_rule_terminates_on_cyclic_graphs(tmp_path: Path) -> None:
    """All rules, every phase, on rings and self-loops; a subprocess timeout is the guard."""
    paths = [tmp_path / "ring.onnx", tmp_path / "self.onnx"]
    onnx.save(_ring_model(), paths[0])
    g = GraphBuilder(opset=15)
    x = g.input("x", [2, 4, 8, 8])
    g.node("Add", [x, "self"], name="self_loop")
    g.nodes[-1].output[0] = "self"
    g.channels["self"] = 4
    onnx.save(g.model([g.bn("self", name="bn")], infer=False), paths[1])
    options = ["--format", "json", "--train-batch-size", "2"]
    for phase in ("inference", "training", "finetune"):
        result = subprocess.run(
            [sys.executable, "-m", "bnlint", *map(str, paths), "--phase", phase, *options],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,  # ten times a generous expected 12 s
            check=False,
        )
        assert result.returncode == 1, result.stderr
        models = json.loads(result.stdout)["models"]
        for model in models:
            codes = [f["code"] for f in model["findings"]]
            assert "BN901" in codes and "BN902" not in codes, (phase, model)
    cycles = [f for f in models[0]["findings"] if "cycle" in f["message"]]
    assert set(cycles[0]["evidence"]["cycles"][0]) >= {"merge", "conv", "bn1", "bn2", "relu"}
