"""``bnlint verify FOLDED --against ORIGINAL``: audit a fold made by any tool.

1. The folded model's constant arithmetic is evaluated first: onnxoptimizer's
   ``fuse_bn_into_conv`` leaves the fold as ``Sqrt``/``Div``/``Mul``/``Add`` nodes on
   constants, and a float16 store shows up as ``Cast`` nodes; only the values they
   compute can be compared.
2. Every BN of the original gets a record: still present (not folded), gone although no
   exact fold exists (a training-mode BN folded as inference, a producer whose output had
   other readers), matched to the node that absorbed it (by node name, then by the tensor
   names around it, then by the order and shapes of weighted nodes), or unmatched.
3. Both verification levels run on the matched folds (:mod:`bnlint.fold.numeric`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from onnx import ModelProto, NodeProto, numpy_helper

from bnlint.fold.numeric import onnx_runners, verify_records
from bnlint.fold.results import FoldError, Verification
from bnlint.fold.verdicts import FoldRecord, FoldVerdict, plan
from bnlint.graph import ModelGraph, Node
from bnlint.onnx_io import FoldIOError, materialize, names_read

WEIGHTED = ("conv", "conv_transpose", "linear")
MAX_EVALUATED_BYTES = 1 << 32

# Plan reasons that make a removed BN a wrong fold, and what was wrong with removing it.
_WRONG_REMOVAL = {
    "training-mode": "a training-mode BN was folded as if it were in inference mode: it "
    "normalises with the statistics of each batch, not with its running statistics",
    "no-running-stats": "a BN without running statistics was folded: it normalises with "
    "batch statistics at inference",
    "per-activation": "a spatial=0 BN (per-activation statistics) was folded per channel",
    "producer-shared-output": "it was folded although the producer's output also feeds "
    "other nodes, which now receive BN-scaled values",
    "parameter-overridable": "its parameters are graph inputs; the fold froze them to their "
    "initial values (see BN020)",
    "parameter-not-constant": "its parameters are computed at run time; the fold froze them",
    "producer-weight-not-constant": "the producer's weights are not constants; the fold froze them",
}


@dataclass
class Audit:
    original: ModelGraph
    folded: ModelGraph
    verification: Verification

    @property
    def records(self) -> list[FoldRecord]:
        return self.verification.records


def evaluate_constants(model: ModelProto) -> ModelProto:
    """A copy of ``model`` where top-level nodes computing only from constants are replaced
    by initializers holding their values (evaluated with NumPy in the model's dtypes)."""
    from bnlint.loaders.onnx_const import EVALUATORS
    from bnlint.loaders.onnx_tensors import attributes

    copy = ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    declared = {value.name for value in graph.input}
    known: dict[str, np.ndarray] = {
        t.name: numpy_helper.to_array(t)
        for t in graph.initializer
        if t.name not in declared and t.data_type not in (16,)  # bfloat16 stays as is
    }
    opset = next((o.version for o in copy.opset_import if o.domain in ("", "ai.onnx")), 0)
    kept: list[NodeProto] = []
    produced: set[str] = set()
    budget = MAX_EVALUATED_BYTES
    for node in graph.node:
        values = _evaluate(node, known, EVALUATORS, attributes, opset)
        if values is None or sum(v.nbytes for v in values) > budget:
            kept.append(node)
            continue
        budget -= sum(v.nbytes for v in values)
        for name, value in zip(node.output, values, strict=True):
            known[name] = value
            produced.add(name)
    read = names_read(kept) | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    for name in sorted(produced & read):
        graph.initializer.append(numpy_helper.from_array(known[name], name))
    return copy


def _evaluate(node: NodeProto, known, evaluators, attributes, opset) -> list[np.ndarray] | None:
    if node.domain not in ("", "ai.onnx") or not node.output:
        return None
    if node.op_type == "Constant":
        value = next((a.t for a in node.attribute if a.name == "value"), None)
        if value is not None:
            return [numpy_helper.to_array(value)]
        from bnlint.loaders.onnx_tensors import constant_value

        constant = constant_value(node)
        return None if constant is None else [constant]
    evaluator = evaluators.get(node.op_type)
    if evaluator is None or node.op_type in ("Shape", "Size"):
        return None
    if not all(name in known for name in node.input if name):
        return None
    inputs = [known[name] if name else None for name in node.input]
    try:
        with np.errstate(all="ignore"):
            outputs = evaluator(inputs, attributes(node), opset)
    except (ValueError, TypeError, IndexError, KeyError, OverflowError):
        return None
    if len(outputs) != len(node.output):
        return None
    return [np.asarray(output) for output in outputs]


def match_folds(original: ModelGraph, folded: ModelGraph) -> list[FoldRecord]:
    """One record per BN of ``original``: where (and whether) ``folded`` absorbed it."""
    remaining = {node.name: node for node in folded.nodes_of("batch_norm") if node.name}
    remaining_outputs = {node.outputs[0]: node for node in folded.nodes_of("batch_norm")}
    by_name = {
        node.name: node
        for node in folded.nodes
        if node.op in WEIGHTED
        and node.name
        and not node.name.startswith("<")
        and node.subgraph is None
    }
    structural = _structural_pairs(original, folded)
    records = []
    for verdict in plan(original):
        bn = verdict.bn
        still_there = (remaining.get(bn.name) if bn.name else None) or remaining_outputs.get(
            bn.outputs[0]
        )
        if still_there is not None:
            if verdict.foldable:
                code, reason = "left-in-place", "the tool left it in place (it can be folded)"
            else:
                code, reason = verdict.reason_code, verdict.reason
            records.append(FoldRecord(verdict, "not-folded", code, reason))
        elif not verdict.foldable:
            problem = _WRONG_REMOVAL.get(verdict.reason_code or "")
            records.append(
                FoldRecord(verdict, "removed", verdict.reason_code, verdict.reason, problem=problem)
            )
        else:
            records.append(_matched(original, folded, verdict, by_name, structural))
    return records


def _matched(
    original: ModelGraph,
    folded: ModelGraph,
    verdict: FoldVerdict,
    by_name: Mapping[str, Node],
    structural: Mapping[int, Node],
) -> FoldRecord:
    bn, producer = verdict.bn, verdict.producer
    forward = verdict.kind == "forward_conv"
    after = producer.outputs[0] if forward else bn.outputs[0]
    candidates = [
        ("name", by_name.get(producer.name) if producer.name else None),
        ("output tensor", folded.producer(after)),
        ("producer tensor", None if forward else folded.producer(producer.outputs[0])),
        ("structure", structural.get(producer.id)),
    ]
    for how, node in candidates:
        target, add = _weighted(folded, node)
        if target is None or not _same_shape(original, producer, folded, target):
            continue
        out = (add or target).outputs[0]
        ref = (bn.inputs[0], after) if forward else (producer.inputs[0], bn.outputs[0])
        return FoldRecord(
            verdict,
            "folded",
            target_index=target.location.node_index,
            add_index=add.location.node_index if add is not None else None,
            ref_tensors=ref,
            new_tensors=(target.inputs[0], out),
            matched_by=how,
        )
    return FoldRecord(
        verdict,
        "unmatched",
        "unmatched",
        "no node of the folded model could be identified as the one that absorbed it",
    )


def _weighted(folded: ModelGraph, node: Node | None) -> tuple[Node | None, Node | None]:
    """``node`` as a fold target: a weighted node (with its bias Add for a MatMul)."""
    if node is None or node.subgraph is not None:
        return None, None
    if node.op == "add":
        for name in node.inputs:
            upstream = folded.producer(name)
            if upstream is not None and upstream.op == "linear" and upstream.attrs.get("matmul"):
                return upstream, node
        return None, None
    if node.op not in WEIGHTED:
        return None, None
    if node.attrs.get("matmul"):
        readers = folded.consumers(node.outputs[0])
        if (
            len(readers) == 1
            and readers[0].op == "add"
            and any(folded.is_constant(name) for name in readers[0].inputs)
        ):
            return node, readers[0]
    return node, None


def _signature(graph: ModelGraph, node: Node) -> tuple:
    shape = graph.shape(node.input("weight"))
    if node.op == "linear" and not node.attrs.get("matmul") and shape and len(shape) == 2:
        shape = tuple(reversed(shape)) if node.attrs.get("transB") else tuple(shape)
    return (node.op, tuple(shape or ()), int(node.attrs.get("groups", 1)))


def _same_shape(original: ModelGraph, producer: Node, folded: ModelGraph, target: Node) -> bool:
    return _signature(original, producer) == _signature(folded, target)


def _structural_pairs(original: ModelGraph, folded: ModelGraph) -> dict[int, Node]:
    """Weighted nodes paired in graph order by op, weight shape and groups (greedy)."""
    ours = [n for n in original.nodes_of(*WEIGHTED) if n.subgraph is None]
    theirs = [n for n in folded.nodes_of(*WEIGHTED) if n.subgraph is None]
    pairs: dict[int, Node] = {}
    position = 0
    for node in ours:
        signature = _signature(original, node)
        for index in range(position, len(theirs)):
            if _signature(folded, theirs[index]) == signature:
                pairs[node.id] = theirs[index]
                position = index + 1
                break
    return pairs


def audit(
    original: ModelGraph,
    folded_graph: ModelGraph,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    tolerance_scale: float = 1.0,
) -> Audit:
    """Audit the fold ``folded_graph`` of ``original`` (both loaded by the ONNX front end)."""
    from bnlint.loaders import LoadError
    from bnlint.loaders.onnx import build_graph

    for graph in (original, folded_graph):
        if "onnx_model" not in graph.extras:
            raise FoldError(f"{graph.path}: verify --against compares two ONNX models")
    try:
        reference = materialize(original.extras["onnx_model"], original)
        evaluated = evaluate_constants(materialize(folded_graph.extras["onnx_model"], folded_graph))
        settings = SimpleNamespace(input_shapes=dict(input_shapes or {}))
        folded = build_graph(evaluated, Path(folded_graph.path), settings)
    except (FoldIOError, LoadError) as error:
        raise FoldError(str(error)) from None
    records = match_folds(original, folded)
    runners = onnx_runners(reference, evaluated)
    verification = verify_records(
        original,
        folded,
        records,
        reference_runner=runners[0],
        folded_runner=runners[1],
        input_shapes=input_shapes,
        tolerance_scale=tolerance_scale,
    )
    return Audit(original, folded, verification)
