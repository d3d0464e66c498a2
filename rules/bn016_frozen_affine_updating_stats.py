"""Frozen BatchNorm affine parameters while the layer still updates its running statistics.

## What it detects
During fine-tuning, a BatchNorm layer whose `weight` and `bias` (gamma and beta) have
`requires_grad=False` but which is in train mode with `track_running_stats=True` and a
non-zero momentum, so every forward pass still overwrites its running mean and variance
with statistics of the fine-tuning batches. Read from live modules (`module:factory`,
trusted pickles), `.pt2` archives (parameter `requires_grad` and the traced training
flag) and TorchScript archives; ONNX cannot say whether a parameter is frozen.

## Why it matters
Freezing gamma/beta is how people freeze a backbone, but `requires_grad=False` does not
stop BatchNorm from updating its buffers: only `eval()` does, and `model.train()` at the
start of each epoch switches every frozen BN back to train mode. The pretrained
statistics drift towards the (often small, differently distributed) fine-tuning data,
which typically costs accuracy after fine-tuning, most with small batches (detection and
segmentation code freezes BN for exactly this reason; torchvision uses
`FrozenBatchNorm2d`).

## Example
`for p in backbone.parameters(): p.requires_grad = False` followed by `model.train()`:
every `BatchNorm2d` in the backbone keeps updating `running_mean`/`running_var`.

## Fix
Put the frozen BN layers in eval mode after every `model.train()` (override `train()` in
your model to call `.eval()` on them), replace them with `FrozenBatchNorm2d`, or set
`momentum=0`; or unfreeze gamma/beta if the layer is meant to adapt.
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.graph import ModelGraph
from bnlint.rule import Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN016",
    name="frozen-affine-updating-stats",
    severity=Severity.WARNING,
    since="0.1.0",
    phases=frozenset({"finetune"}),
    needs=frozenset({"modules"}),
)


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    for bn in graph.nodes_of("batch_norm"):
        flags = bn.attrs.get("affine_requires_grad")
        if not flags or not bn.attrs.get("affine", True):
            continue
        known = [flag for flag in flags if flag is not None]
        if not known or any(known):
            continue  # something still trains: the layer is not frozen
        if not bn.attrs.get("training") or bn.attrs.get("track_running_stats") is False:
            continue  # eval mode (statistics frozen too) or no statistics to update
        momentum = bn.attrs.get("momentum", 0.1)
        if momentum == 0:
            continue  # momentum 0: the running statistics never move
        yield ctx.finding(
            bn,
            f"{bn.source_op} has frozen gamma/beta (requires_grad=False) but is in train "
            "mode, so its running mean and variance keep updating from fine-tuning batches",
            evidence={
                "affine_requires_grad": list(flags),
                "training": True,
                "training_evidence": bn.attrs.get("training_evidence"),
                "momentum": momentum,
                "num_batches_tracked": bn.attrs.get("num_batches_tracked"),
            },
            fix="call .eval() on frozen BN layers after model.train() (or use "
            "FrozenBatchNorm2d / momentum=0), or unfreeze gamma and beta",
        )
