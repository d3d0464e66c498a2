"""A normalization layer applied directly to the output of another normalization layer.

## What it detects
A BatchNorm, LayerNorm, GroupNorm, InstanceNorm or RMSNorm whose input comes from another
normalization through shape-transparent ops only (reshape, flatten, transpose, identity,
cast, dropout): BN → BN, LayerNorm → BN, BN → InstanceNorm and so on. A norm followed by an
activation, a residual Add or any weight layer before the next norm is the usual
norm → activation → norm structure and is not reported.

## Why it matters
The second normalization re-standardizes what the first one just produced. When it
normalizes per channel (BatchNorm, InstanceNorm), the first layer's per-channel scale and
shift (gamma, beta) are cancelled exactly, so those parameters receive no useful gradient;
in general the pair costs memory traffic and latency for little or no effect. It is
often a leftover from refactoring (a `norm_layer` passed to a block that already
normalizes its output) or a converter that inserted a norm twice.

## Example
`nn.Sequential(nn.Conv2d(64, 64, 3), nn.BatchNorm2d(64), nn.BatchNorm2d(64), nn.ReLU())`,
or a transformer block that applies `LayerNorm` and then `BatchNorm1d` to the same tokens.

## Fix
Remove one of the two (usually the second), or put the intended layer (an activation, a
projection) between them.
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.analysis.graph_walks import NORM_OPS, TRANSPARENT_OPS, data_input, walk_back
from bnlint.graph import ModelGraph
from bnlint.rule import ALL_PHASES, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN017",
    name="double-normalization",
    severity=Severity.INFO,
    since="0.1.0",
    phases=ALL_PHASES,
)


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    for norm in graph.nodes_of(*NORM_OPS):
        walk = walk_back(graph, data_input(norm), TRANSPARENT_OPS)
        first = walk.node
        if first is None or first.op not in NORM_OPS:
            continue
        via = "".join(f" → {op}" for op in reversed(walk.through_ops))
        yield ctx.finding(
            norm,
            f"{norm.source_op} {norm.display_name!r} normalizes the output of "
            f"{first.source_op} {first.display_name!r}{via} again",
            evidence={
                "first": first.name,
                "first_op": first.source_op,
                "second_op": norm.source_op,
                "through": list(reversed(walk.through_ops)),
            },
            fix="remove one of the two normalizations, or add the intended layer between them",
        )
