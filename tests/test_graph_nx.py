"""``ModelGraph.nx``: the networkx view plug-ins query (docs/plugins.md).

It must say exactly what the precomputed indices say (the same edges, in both directions,
for every zoo model), carry the documented node and edge attributes, be built once and
never be edited by a rule, and follow nodes added after it was built.
"""

from __future__ import annotations

import re
from pathlib import Path

import networkx
import pytest

from bnlint.config import Settings
from bnlint.graph import GraphFacts, ModelGraph
from bnlint.graph_nx import NODE_FIELDS
from bnlint.loaders import load_model
from tests.zoo import onnx_zoo


def _load(path: Path) -> ModelGraph:
    return load_model(str(path), Settings())


@pytest.mark.parametrize("name", sorted(onnx_zoo.ZOO))
def test_the_view_has_the_edges_of_the_indices(name: str, tmp_path: Path) -> None:
    graph = _load(onnx_zoo.ZOO[name](tmp_path))
    view = graph.nx
    assert list(view.nodes) == [node.id for node in graph.nodes]
    for node in graph.nodes:
        assert set(view.successors(node.id)) == {other.id for other in graph.successors(node)}
        assert set(view.predecessors(node.id)) == {other.id for other in graph.predecessors(node)}
        for tensor in node.inputs:
            producer = graph.producer(tensor)
            if producer is not None:
                assert view.has_edge(producer.id, node.id, key=tensor), (name, tensor)
    expected = sum(
        len(set(record.consumers))
        for record in graph.tensors.values()
        if record.producer is not None
    )
    assert view.number_of_edges() == expected


def test_nodes_and_edges_carry_the_documented_attributes(tmp_path: Path) -> None:
    graph = _load(onnx_zoo.resnet_opset15(tmp_path))
    view = graph.nx
    assert view.graph == {"path": graph.path, "format": "onnx"}
    bn = graph.nodes_of("batch_norm")[0]
    data = view.nodes[bn.id]
    assert set(data) == {*NODE_FIELDS, "node"}
    assert data["node"] is bn and data["op"] == "batch_norm" and data["name"] == "stem.bn"
    assert data["source_op"] == "BatchNormalization" and data["attrs"]["eps"] == bn.attrs["eps"]
    conv = graph.input_producer(bn)
    tensor = bn.inputs[0]
    assert view.edges[conv.id, bn.id, tensor] == {
        "tensor": tensor,
        "shape": graph.shape(tensor),
        "dtype": "float32",
    }
    assert graph.shape(tensor) == (1, 8, 16, 16)


def test_networkx_algorithms_answer_structural_questions(tmp_path: Path) -> None:
    graph = _load(onnx_zoo.resnet_opset15(tmp_path))
    view = graph.nx
    by_name = {node.name: node.id for node in graph.nodes}
    assert networkx.is_directed_acyclic_graph(view)
    ancestors = {view.nodes[i]["name"] for i in networkx.ancestors(view, by_name["block.bn2"])}
    assert {"stem.conv", "stem.bn", "block.conv1", "block.conv2"} <= ancestors
    assert not networkx.has_path(view, by_name["block.bn2"], by_name["stem.conv"])
    convs = {i for i, op in view.nodes(data="op") if op == "conv"}
    # the residual Add has two paths back to the stem: the block and the skip connection
    add = next(i for i, op in view.nodes(data="op") if op == "add")
    assert len(list(networkx.all_simple_paths(view, by_name["stem.bn"], add))) == 2
    assert convs == {node.id for node in graph.nodes_of("conv")}


def test_the_view_is_built_once_and_read_only(tmp_path: Path) -> None:
    graph = _load(onnx_zoo.resnet_opset15(tmp_path))
    assert graph._nx is None, "loading builds no networkx graph"
    view = graph.nx
    assert graph.nx is view
    with pytest.raises(networkx.NetworkXError):
        view.add_edge(0, 1)
    with pytest.raises(networkx.NetworkXError):
        view.remove_node(0)
    copy = view.copy()
    copy.remove_node(0)
    assert view.has_node(0) and not copy.has_node(0)


def test_a_node_added_after_the_view_was_built_appears_in_it() -> None:
    graph = ModelGraph("m.onnx", GraphFacts(format="onnx"))
    graph.add_node("conv", "Conv", "conv", ["x", "w"], ["y"])
    assert list(graph.nx.nodes) == [0]
    graph.add_node("activation", "Relu", "relu", ["y"], ["z"])
    assert list(graph.nx.edges(keys=True)) == [(0, 1, "y")]


def test_the_guides_networkx_examples_run_as_printed(tmp_path: Path) -> None:
    """The ```python block of docs/plugins.md that queries ``graph.nx``, run on a ResNet-like
    model: every statement works and the pattern finds the three conv -> BN -> ReLU chains."""
    guide = (Path(__file__).resolve().parents[1] / "docs" / "plugins.md").read_text()
    (example,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", guide, re.S)
        if block.startswith("import networkx\n\nview = graph.nx")
    ]
    graph = _load(onnx_zoo.resnet_opset15(tmp_path))
    scope = {"graph": graph}
    exec(compile(example, "docs/plugins.md", "exec"), scope)
    assert {node.name for node in graph.nodes_of("conv")} == {
        "stem.conv",
        "block.conv1",
        "block.conv2",
    }
    chains = scope["chains"]
    assert sorted(chain["bn"].name for chain in chains) == ["block.bn1", "stem.bn"]
    assert all(chain["conv"].op == "conv" and chain["act"].op == "activation" for chain in chains)
    assert scope["upstream"] and not scope["no_activation"].has_node(chains[0]["act"].id)
