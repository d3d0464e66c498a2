"""A conv or linear bias that the following BatchNorm cancels.

## What it detects
A Conv, ConvTranspose, Gemm or MatMul + bias Add whose output goes only to a
BatchNormalization (directly or through Identity/Cast) that normalizes the bias's own axis
(channel axis 1: every conv, and linear layers on (N, C) features), while the bias is not
all zero. Silent when the layer's output has other consumers or is a graph output (the
bias matters to them), when the bias is all zero (the dynamo exporter's zero-bias
plumbing, evaluated by the loader, is such a bias), and when the bias is computed at run
time.

## Why it matters
BN subtracts the per-channel mean, which includes the per-channel bias, so the bias has no
effect on the output: in training its gradient is zero and the weights stay at their
initial values, and at inference the running mean simply absorbs it. It costs parameters,
an extra add and optimizer state, and signals that the layer was written without the BN in
mind (torchvision and timm build conv-BN pairs with `bias=False`).

## Example
`nn.Conv2d(64, 128, 3, padding=1)` (bias=True by default) followed by
`nn.BatchNorm2d(128)`.

## Fix
Create the layer with `bias=False` (`nn.Conv2d(..., bias=False)`,
`nn.Linear(..., bias=False)`); the BN's own shift (beta) provides the offset. When loading
old checkpoints, fold the bias into the BN's running mean (running_mean -= bias).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnlint.analysis.graph_walks import VALUE_OPS, constant_operand, sole_consumer, walk_back
from bnlint.fold import bn_channels
from bnlint.graph import ModelGraph, Node
from bnlint.rule import ALL_PHASES, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN007",
    name="redundant-bias-before-norm",
    severity=Severity.INFO,
    since="0.1.0",
    needs=frozenset({"producer_edges", "parameters"}),
    phases=ALL_PHASES,
)

PRODUCERS = frozenset({"conv", "conv_transpose", "linear"})


def _single_path(graph: ModelGraph, start: str, bn: Node, through: tuple[Node, ...]) -> bool:
    """Every tensor from ``start`` to ``bn`` has exactly one consumer and is no graph output."""
    chain = [*reversed(through), bn]
    tensor = start
    for node in chain:
        if sole_consumer(graph, tensor) is not node:
            return False
        tensor = node.outputs[0] if node.outputs else ""
    return True


def _bias_on_channel_axis(graph: ModelGraph, producer: Node, bias: np.ndarray, bn: Node) -> bool:
    channels = bn_channels(graph, bn)
    if channels is None or int(np.prod(bias.shape)) != channels:
        return False
    if producer.op != "linear":
        return True
    shape = graph.shape(bn.inputs[0])
    return shape is not None and len(shape) == 2  # features on axis 1 only for (N, C)


def _biased_producer(graph: ModelGraph, upstream: Node) -> tuple[Node, str, str] | None:
    """(layer, bias tensor, tensor leaving the layer incl. its bias Add) or None."""
    if upstream.op in PRODUCERS and upstream.outputs:
        bias = upstream.input("bias")
        if not bias or upstream.attrs.get("beta", 1.0) == 0:  # Gemm beta=0 ignores C
            return None
        return upstream, bias, upstream.outputs[0]
    pair = constant_operand(graph, upstream)
    if pair is None or not upstream.outputs:
        return None
    matmul = graph.producer(pair[0])
    if matmul is None or matmul.op != "linear" or not matmul.attrs.get("matmul"):
        return None
    if sole_consumer(graph, pair[0]) is not upstream or upstream.op != "add":
        return None
    return matmul, pair[1], upstream.outputs[0]


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    for bn in graph.nodes_of("batch_norm"):
        walk = walk_back(graph, bn.inputs[0] if bn.inputs else None, VALUE_OPS)
        found = _biased_producer(graph, walk.node) if walk.node is not None else None
        if found is None:
            continue
        producer, bias_name, start = found
        bias = graph.param(bias_name)
        if bias is None or not _bias_on_channel_axis(graph, producer, bias, bn):
            continue
        if not _single_path(graph, start, bn, walk.through):
            continue
        values = np.abs(np.asarray(bias, dtype=np.float64))
        if not np.any(values):
            continue
        yield ctx.finding(
            producer,
            f"the bias of {producer.source_op} {producer.display_name!r} is cancelled by the "
            f"mean subtraction of {bn.source_op} {bn.display_name!r}",
            evidence={
                "bias": bias_name,
                "batchnorm": bn.name,
                "channels": int(values.size),
                "bias_norm": float(np.sqrt(np.sum(values**2))),
                "bias_max_abs": float(values.max()),
            },
            fix="create the layer with bias=False; BatchNorm's beta provides the offset",
        )
