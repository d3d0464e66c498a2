"""The fast paths behind linting and folding large models give the plain paths' answers.

Zero-copy weights located by walking the protobuf wire format, the concurrent sha256,
block-wise reads of external weights, the batched Conv algebra and the per-fold numeric
verification of large graphs; plus the two small correctness items that came with them
(the ONNX stack-trace frame, a BatchNorm without outputs in the fold plan).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from bnlint.config import Settings
from bnlint.fold import fold_graph, plan
from bnlint.graph import GraphFacts, ModelGraph
from bnlint.loaders.onnx import build_graph, load
from bnlint.loaders.onnx_file import raw_data_ranges, read_mapped
from bnlint.loaders.onnx_scope import exporter_metadata
from tests.zoo.onnx_builder import GraphBuilder


def _conv_chain(blocks: int, channels: int = 4, bias: bool = False, seed: int = 0):
    g = GraphBuilder(opset=15, seed=seed)
    x = g.input("x", [1, channels, 6, 6])
    for _ in range(blocks):
        x = g.relu(g.bn(g.conv(x, channels, 1, bias=bias, pads=[0, 0, 0, 0])))
    return g.model([x], infer=False)


def _big_weights_model() -> onnx.ModelProto:
    g = GraphBuilder(opset=15, seed=1)
    x = g.input("x", [1, 128, 8, 8])
    for _ in range(3):
        x = g.relu(g.bn(g.conv(x, 128, 3)))  # 590 KB weights: the wire walk applies
    return g.model([x], infer=False)


def test_wire_walk_finds_every_raw_data_range(tmp_path: Path) -> None:
    model = _big_weights_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    data = path.read_bytes()
    ranges = raw_data_ranges(memoryview(data))
    raw = {t.name: t.raw_data for t in model.graph.initializer if t.raw_data}
    assert set(ranges) == set(raw)
    for name, (offset, length) in ranges.items():
        assert data[offset : offset + length] == raw[name]
    assert raw_data_ranges(memoryview(data[:-7])) == {}, "a truncated file walks to nothing"


def test_weights_are_read_in_place_from_the_mapped_file(tmp_path: Path) -> None:
    model = _big_weights_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    found = read_mapped(path)
    assert found.raw_ranges, "weights dominate this file: the walk ran"
    graph = load(path, Settings())
    buffer = graph.source.file_buffer
    assert hashlib.sha256(buffer).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    for tensor in model.graph.initializer:
        value = graph.param(tensor.name)
        np.testing.assert_array_equal(value, numpy_helper.to_array(tensor))
        if tensor.name.endswith(".weight"):
            assert not value.flags.writeable, "a view of the mapped file, not a copy"


def test_external_weights_are_reduced_block_by_block(tmp_path: Path) -> None:
    from bnlint.analysis.weight_absmax import weight_channel_absmax

    g = GraphBuilder(opset=15, seed=2)
    x = g.input("x", [2, 300])
    x = g.relu(g.bn(g.gemm(x, 200, name="fc")))
    model = g.model([x], infer=False)
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, size_threshold=0)
    graph = load(tmp_path / "m.onnx", Settings())
    fc = graph.nodes_of("linear")[0]
    weight = graph.param(fc.input("weight"))
    blocks = list(graph.params.row_blocks(fc.input("weight"), block_bytes=4096))
    assert len(blocks) > 10
    np.testing.assert_array_equal(np.concatenate(blocks), weight)
    expected = np.abs(weight).max(axis=1 if fc.attrs.get("transB") else 0).astype(np.float64)
    np.testing.assert_array_equal(
        weight_channel_absmax(graph, fc.input("weight"), "gemm", fc), expected
    )


def test_one_wrong_fold_among_many_is_the_one_blamed() -> None:
    """Every changed region is checked on its own: a weight 1 % off in one fold of twelve
    fails exactly that fold."""
    from bnlint.fold import engine

    model = _conv_chain(12, bias=True, seed=4)
    graph = build_graph(model, Path("m.onnx"), Settings())
    real = engine.fold_model

    def corrupt(model, graph, keep):
        folded, records, written = real(model, graph, keep)
        conv = [n for n in folded.graph.node if n.op_type == "Conv"][5]
        tensor = next(t for t in folded.graph.initializer if t.name == conv.input[1])
        values = numpy_helper.to_array(tensor) * 1.01
        tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float32), tensor.name))
        return folded, records, written

    import pytest

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine, "fold_model", corrupt)
        verification = fold_graph(graph, numeric=False).verification
    wrong = [r.bn.name for r in verification.records if r.problem is not None]
    assert wrong == [verification.records[5].bn.name]


def test_large_graphs_check_regions_in_chunks_without_a_whole_model_run(monkeypatch) -> None:
    from bnlint.fold import runtime_level

    model = _conv_chain(40, seed=5)
    graph = build_graph(model, Path("m.onnx"), Settings())
    monkeypatch.setattr(runtime_level, "LOCAL_NODES", 50)  # this 120-node graph is "large"
    monkeypatch.setattr(runtime_level, "CHUNK_NODES", 16)
    verification = fold_graph(graph).verification
    assert verification.ok and verification.numeric_ran
    assert verification.outputs == [] and "nodes" in verification.outputs_skipped
    assert all(r.numeric is not None and r.numeric.ok for r in verification.records)


def test_a_fold_that_loses_precision_is_caught(monkeypatch) -> None:
    from bnlint.fold import rewrite

    model = _conv_chain(10, seed=6)
    graph = build_graph(model, Path("m.onnx"), Settings())
    real = rewrite.fold_weight_rounded
    calls = []

    def lossy(weight, affine, family, groups, dtype):  # the fourth fold rounds to float16
        calls.append(1)
        folded = real(weight, affine, family, groups, dtype)
        if len(calls) == 4:
            folded.value[...] = folded.value.astype(np.float16)
        return folded

    monkeypatch.setattr(rewrite, "fold_weight_rounded", lossy)
    verification = fold_graph(graph).verification
    wrong = [r for r in verification.records if r.problem is not None]
    assert [r.bn.name for r in wrong] == [verification.records[3].bn.name]
    assert wrong[0].algebraic is not None and not wrong[0].algebraic.ok


def test_onnx_source_line_is_the_last_frame_outside_torch() -> None:
    node = onnx.helper.make_node("Relu", ["x"], ["y"])
    trace = (
        'File "/home/me/train.py", line 10, in main\n    model(x)\n'
        'File "/home/me/net.py", line 42, in forward\n    x = self.bn1(x)\n'
        'File "/usr/lib/python3/site-packages/torch/nn/modules/module.py", line 1775, '
        "in _call_impl\n    return forward_call(*args)\n"
    )
    onnx.helper.set_metadata_props(node, {"pkg.torch.onnx.stack_trace": trace})
    meta = exporter_metadata(node)
    assert (meta.source_file, meta.source_line) == ("/home/me/net.py", 42)
    only_torch = 'File "/x/site-packages/torch/nn/functional.py", line 5, in f\n'
    onnx.helper.set_metadata_props(node, {"pkg.torch.onnx.stack_trace": only_torch})
    assert exporter_metadata(node).source_line is None


def test_fold_plan_of_a_batchnorm_without_outputs() -> None:
    graph = ModelGraph("m", GraphFacts(format="onnx", has_edges=False))
    for name in ("s", "b", "m", "v"):
        graph.params.add(name, np.ones(2, dtype=np.float32))
    graph.add_node(
        "batch_norm", "BatchNormalization", "bn", ["x", "s", "b", "m", "v"], [], attrs={"eps": 1e-5}
    )
    (verdict,) = plan(graph)
    assert not verdict.foldable and verdict.reason_code == "no-producer"


def test_models_given_in_memory_have_no_file_buffer() -> None:
    graph = build_graph(_conv_chain(3), Path("<ModelProto>"), Settings())
    assert graph.source.file_buffer is None
