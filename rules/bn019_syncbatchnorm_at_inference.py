"""SyncBatchNorm (a distributed-training-only layer) left in a model meant for inference.

## What it detects
A `torch.nn.SyncBatchNorm` (or another synchronised BN class such as a `SyncBN` or
`NaiveSyncBatchNorm`) in a model being exported or served, typically left over from
`nn.SyncBatchNorm.convert_sync_batchnorm(model)` in the training script. Read from
live modules, `.pt2` archives (the module class is in the node metadata) and TorchScript
archives; an exported ONNX graph no longer says which class a BN came from.

## Why it matters
SyncBatchNorm exists to all-reduce batch statistics across processes while training; at
inference it brings only differences from the plain layer: `torch.jit.script` fails on
it (it references `torch.distributed`), `torch.ao.quantization.fuse_modules` and other
Conv+BN fusers have no rule for it, so the BN is not folded, and it does not check its
input rank the way `BatchNorm2d` does (an unbatched `(C, H, W)` input is taken as
`(N, C, L)` and fails on the channel count instead of with a clear message).

## Example
`model = nn.SyncBatchNorm.convert_sync_batchnorm(model)` in a DDP training script, then
`torch.export.save(torch.export.export(model.eval(), (x,)), "model.pt2")`.

## Fix
Convert back before exporting: replace each `SyncBatchNorm` with `BatchNorm1d/2d/3d` of
the same `num_features`, `eps`, `momentum` and `affine`, copying its `state_dict()`; or
call `convert_sync_batchnorm` only inside the distributed training code, not in the
model definition that is exported.
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.graph import ModelGraph
from bnlint.rule import INFERENCE, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN019",
    name="syncbatchnorm-at-inference",
    severity=Severity.WARNING,
    since="0.1.0",
    phases=INFERENCE,
    needs=frozenset(),  # the module class is enough: runs on module trees without edges
)


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    for bn in graph.nodes_of("batch_norm"):
        if not bn.attrs.get("sync"):
            continue
        yield ctx.finding(
            bn,
            f"{bn.source_op} is a distributed-training layer left in a model meant for "
            "inference: TorchScript scripting and Conv+BN fusers do not support it",
            evidence={"module_class": bn.attrs.get("module_class"), "phase": ctx.phase},
            fix="replace it with BatchNorm1d/2d/3d (same num_features, eps, momentum, affine, "
            "copied state_dict) before exporting",
        )
