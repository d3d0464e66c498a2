"""Dropout feeding a BatchNorm, whose statistics then shift between training and inference.

## What it detects
A Dropout with a non-zero drop probability whose output reaches a BatchNormalization
through shape-transparent ops (reshape, flatten, transpose, identity, cast), element-wise
activations and element-wise ops with a constant (bias Add, scale Mul); with
`through-weight-layers`, also Dropout → Conv/Linear → BN. Dropout after the BN and Dropout
with ratio 0 are fine. One finding per Dropout, listing the BNs it feeds.

## Why it matters
Li et al., "Understanding the Disharmony between Dropout and Batch Normalization by
Variance Shift" (CVPR 2019): in training, inverted dropout scales kept units by 1/(1-p),
so the variance of the BN input includes dropout noise; at inference dropout is the
identity and the variance is smaller. BN's running variance was accumulated in training,
so at inference it normalizes with the wrong variance and the shift compounds through the
following layers, costing accuracy (DenseNet, ResNet, ResNeXt in the paper).
The rule applies in every phase: in a training graph it warns before the statistics are
collected; in an inference graph that still carries the Dropout, the running statistics
were already collected with dropout active, so the deployed model has the shift baked in.

## Example
`nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.5), nn.BatchNorm1d(256))`,
or a residual block with `Dropout2d` right before its BN.

## Fix
Move the Dropout after the last BatchNorm (for example only before the classifier), use a
variance-stable variant (Li et al. propose Uout, a uniform noise), or, for an already
trained model, re-estimate the BN running statistics with dropout disabled (a few forward
passes in train mode for BN and eval mode for Dropout).

## Options
- `through-weight-layers` (default false): also report Dropout → Conv/Linear → BN. The
  variance shift survives one weight layer but shrinks as its fan-in grows (Li et al.
  analyse it for Wide ResNet), so this is opt-in.
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.analysis.graph_walks import (
    LAYOUT_OPS,
    VALUE_OPS,
    Walk,
    data_input,
    dropout_ratio,
    walk_back,
)
from bnlint.graph import ModelGraph, Node
from bnlint.rule import ALL_PHASES, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN008",
    name="dropout-before-batchnorm",
    severity=Severity.WARNING,
    since="0.1.0",
    phases=ALL_PHASES,
    options={"through-weight-layers": False},
)

# Element-wise activations carry the variance shift through as well.
_THROUGH = VALUE_OPS | LAYOUT_OPS | {"activation"}
_WEIGHT_LAYERS = frozenset({"conv", "conv_transpose", "linear"})


def _feeding_dropout(graph: ModelGraph, bn: Node, through_layers: bool) -> tuple[Walk, Node | None]:
    """The dropout upstream of ``bn`` (or None) and the weight layer passed, if any."""
    walk = walk_back(graph, data_input(bn), _THROUGH, constants=True)
    layer = None
    if through_layers and walk.node is not None and walk.node.op in _WEIGHT_LAYERS:
        layer = walk.node
        walk = walk_back(graph, data_input(layer), _THROUGH, constants=True)
    return walk, layer


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    through_layers = bool(ctx.options["through-weight-layers"])
    fed: dict[int, list[tuple[Node, Node | None]]] = {}
    for bn in graph.nodes_of("batch_norm"):
        walk, layer = _feeding_dropout(graph, bn, through_layers)
        if walk.node is not None and walk.node.op == "dropout":
            fed.setdefault(walk.node.id, []).append((bn, layer))
    for dropout_id, targets in fed.items():
        dropout = graph.node(dropout_id)
        ratio = dropout_ratio(graph, dropout)
        if ratio == 0:
            continue
        names = ", ".join(repr(bn.display_name) for bn, _ in targets)
        layers = [layer.display_name for _, layer in targets if layer is not None]
        via = f" through {', '.join(repr(name) for name in layers)}" if layers else ""
        shown = f"p={ratio:g}" if ratio is not None else "p computed at run time"
        yield ctx.finding(
            dropout,
            f"{dropout.source_op} {dropout.display_name!r} ({shown}) feeds "
            f"{targets[0][0].source_op} {names}{via}: the BN's running variance includes "
            "dropout noise that is absent at inference (variance shift)",
            evidence={
                "ratio": ratio,
                "batchnorms": [bn.name for bn, _ in targets],
                "weight_layers": layers,
                "phase": ctx.phase,
            },
            fix="move the dropout after the last BatchNorm, or re-estimate the BN statistics "
            "with dropout disabled",
        )
