"""BatchNorm parameters whose shapes disagree with each other or with the input's channels.

## What it detects
For every BatchNorm, from tensor shapes alone (no parameter values are read):
- a scale, bias, running mean or running variance that is not 1-D (per-channel BN);
- parameters whose lengths differ from each other;
- parameters whose length differs from the channel count of the input, dimension 1 of its
  shape when that is known; otherwise the output channels of the Conv, ConvTranspose
  (group-aware) or Gemm that produces the input, looking through activations, dropout,
  identities and casts on the way.

Opsets before 9 allow `spatial=0` (statistics per activation): then the parameters must
agree with each other and their first dimension with the input's channels.

## Why it matters
ONNX's checker validates attribute and type constraints but not that the four BN vectors
and the input agree, and shape inference does not always catch it either. Runtimes fail
late with an obscure broadcast or index error (or, with length-1 vectors, silently
broadcast one statistic over every channel). In PyTorch the same mistake surfaces as
"running_mean should contain 36 elements not 2048" at the first forward pass.

## Example
A Conv with 64 output channels feeding a BatchNormalization whose running_var has 32
elements, after a pruning script updated the weight and scale but not the statistics.

## Fix
Make every BN vector as long as the channel count of the layer it normalises: fix the
pruning or conversion script, or the `num_features` of the BN module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from bnlint.analysis.bn_params import BN_ROLES
from bnlint.fold import output_channels
from bnlint.graph import ModelGraph, Node
from bnlint.rule import ALL_PHASES, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN010",
    name="channel-mismatch",
    severity=Severity.ERROR,
    since="0.1.0",
    phases=ALL_PHASES,
    needs=frozenset({"parameters"}),
    runs_without_phase=True,
)
_PASS_THROUGH = frozenset({"activation", "dropout", "identity", "cast"})
_MAX_HOPS = 8


def _weighted_producer(graph: ModelGraph, bn: Node) -> tuple[Node, str] | None:
    """The Conv/ConvTranspose/Gemm whose output channels reach ``bn`` unchanged."""
    node = graph.producer(bn.inputs[0] if bn.inputs else None)
    for _ in range(_MAX_HOPS):
        if node is None:
            return None
        if node.op in ("conv", "conv_transpose"):
            return node, node.op
        if node.op == "linear":
            # Gemm outputs are 2-D (N, features); a MatMul's rank is unknown here.
            return (node, "gemm") if not node.attrs.get("matmul") else None
        if node.op not in _PASS_THROUGH:
            return None
        node = graph.producer(node.inputs[0] if node.inputs else None)
    return None


def _shape_problems(shapes: dict[str, tuple], per_activation: bool) -> list[str]:
    problems = []
    if not per_activation:
        odd = [f"{role} {list(shape)}" for role, shape in shapes.items() if len(shape) != 1]
        if odd:
            problems.append("not 1-D: " + ", ".join(odd))
    distinct = {tuple(shape) for shape in shapes.values()}
    if len(distinct) > 1:
        listed = ", ".join(f"{role} {list(shape)}" for role, shape in shapes.items())
        problems.append(f"parameter shapes differ: {listed}")
    return problems


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    for bn in graph.nodes_of("batch_norm"):
        shapes = {}
        for role in BN_ROLES:
            shape = graph.shape(bn.input(role))
            if shape is not None and all(isinstance(d, int) for d in shape):
                shapes[role] = tuple(shape)
        if not shapes:
            continue
        per_activation = bn.attrs.get("spatial", 1) == 0
        problems = _shape_problems(shapes, per_activation)
        evidence: dict[str, Any] = {"param_shapes": {r: list(s) for r, s in shapes.items()}}
        input_shape = graph.shape(bn.inputs[0] if bn.inputs else None)
        expected, source = None, None
        if input_shape is not None and len(input_shape) >= 2 and isinstance(input_shape[1], int):
            expected, source = input_shape[1], "input shape"
            evidence["input_shape"] = list(input_shape)
        elif graph.facts.has_edges:
            found = _weighted_producer(graph, bn)
            if found is not None:
                producer, kind = found
                expected = output_channels(graph, producer, kind)
                source = f"{producer.source_op} {producer.display_name!r}"
                evidence["producer"] = producer.display_name
        if expected is not None:
            evidence["input_channels"] = expected
            evidence["channels_from"] = source
            wrong = {
                role: shape[0] for role, shape in shapes.items() if shape and shape[0] != expected
            }
            if wrong:
                listed = ", ".join(f"{role} has {length}" for role, length in wrong.items())
                problems.append(
                    f"the input has {expected} channels (from the {source}) but {listed}"
                )
        if problems:
            evidence["problems"] = problems
            yield ctx.finding(
                bn,
                f"{bn.source_op} channel mismatch: " + "; ".join(problems),
                evidence=evidence,
                fix="make scale, bias, mean and var as long as the input's channel count",
            )
