"""A BatchNorm that normalizes a sequence or spatial axis instead of the feature axis.

## What it detects
A BatchNormalization (which always normalizes axis 1) on a tensor of rank 3 or more whose
features sit on the LAST axis: its input comes from a Linear/MatMul layer (or a LayerNorm
over the last axis) through ops that keep the last axis in place (identity, cast, dropout,
element-wise activations, bias Add, reshapes that keep the last dim) with no Transpose in
between, and the BN's channel count equals the size of axis 1. The typical case is
`nn.BatchNorm1d(seq_len)` applied to the (N, L, C) output of `nn.Linear` in a transformer:
PyTorch accepts it whenever `num_features == L`. Not reported: BatchNorm1d on (N, C)
features, the correct `transpose(1, 2) → BN → transpose(1, 2)` pattern, and Conv1d output
(N, C, L), whose features are on axis 1.

## Why it matters
BN computes one mean and variance per index of axis 1. On (N, L, C) that is one statistic
per sequence position, pooled across all features: position 3 of every sample shares a
scale, features with different ranges are mixed, and the model silently depends on the
sequence length it was built for (another length fails or, if equal by chance, is
normalized with the wrong statistics). Training still converges, so nothing points at
the bug except worse accuracy.

## Example
`h = self.fc1(x)  # (N, L, ff)` then `h = self.bn(h)` with `self.bn = nn.BatchNorm1d(L)`.

## Fix
Normalize the feature axis: `self.bn = nn.BatchNorm1d(ff)` applied as
`self.bn(h.transpose(1, 2)).transpose(1, 2)`, or use `nn.LayerNorm(ff)` if per-token
normalization is what was meant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from bnlint.analysis.graph_walks import VALUE_OPS, data_input, walk_back
from bnlint.fold import bn_channels
from bnlint.graph import ModelGraph, Node
from bnlint.rule import ALL_PHASES, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN009",
    name="batchnorm-wrong-axis",
    severity=Severity.ERROR,
    since="0.1.0",
    phases=ALL_PHASES,
)

_KEEPS_LAST_AXIS = VALUE_OPS | {"dropout", "activation", "reshape"}


def _last_axis_stays(graph: ModelGraph) -> Callable[[Node], bool]:
    def accept(node: Node) -> bool:
        if node.op != "reshape":
            return True
        before, after = graph.shape(data_input(node)), graph.shape(node.outputs[0])
        return bool(before) and bool(after) and before[-1] == after[-1]

    return accept


def _features_last(graph: ModelGraph, node: Node) -> bool:
    """True when ``node`` produces a tensor of rank >= 3 with its features on the last axis."""
    shape = graph.shape(node.outputs[0] if node.outputs else None)
    if shape is None or len(shape) < 3:
        return False
    if node.op == "linear":
        return True
    if node.op in ("layer_norm", "rms_norm"):
        axis = node.attrs.get("axis", -1)
        return axis in (-1, len(shape) - 1)
    return False


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    for bn in graph.nodes_of("batch_norm"):
        shape = graph.shape(data_input(bn))
        if shape is None or len(shape) < 3:
            continue
        channels = bn_channels(graph, bn)
        if channels is not None and isinstance(shape[1], int) and channels != shape[1]:
            continue  # a channel mismatch, BN010's finding
        walk = walk_back(
            graph, data_input(bn), _KEEPS_LAST_AXIS, constants=True, accept=_last_axis_stays(graph)
        )
        producer = walk.node
        if producer is None or not _features_last(graph, producer):
            continue
        rank = len(shape)
        yield ctx.finding(
            bn,
            f"{bn.source_op} {bn.display_name!r} normalizes axis 1 (size {shape[1]}) of a "
            f"{tuple(shape)} tensor whose features are on the last axis (size {shape[-1]}, "
            f"from {producer.source_op} {producer.display_name!r}): one statistic per "
            "position instead of per feature",
            evidence={
                "input_shape": list(shape),
                "channels": channels,
                "normalized_axis": 1,
                "feature_axis": rank - 1,
                "feature_size": shape[-1],
                "producer": producer.name,
                "through": walk.through_ops,
            },
            fix="normalize the features: BatchNorm1d(features) on x.transpose(1, 2) and "
            "transpose back, or LayerNorm(features)",
        )
