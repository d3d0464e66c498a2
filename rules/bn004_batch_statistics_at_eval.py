"""BatchNorm without running statistics, so it uses batch statistics even in eval mode.

## What it detects
A BatchNorm layer in a model meant for inference that has no running statistics to
normalise with: a PyTorch module built with `track_running_stats=False`, or one whose
`running_mean`/`running_var` are missing (set to `None`, absent from the export or the
archive, or an empty input). PyTorch then computes the mean and variance of the current
batch in `eval()` as well as in `train()`; a graph exported from such a module carries
no statistics at all.

## Why it matters
Inference output then depends on the batch: a sample's prediction changes with the
other samples it is batched with, a batch of one gives a zero-variance channel for
`BatchNorm1d` on `(N, C)` input (PyTorch raises "Expected more than 1 value per channel")
and per-image statistics for convolutions, and results differ between the batch sizes of
offline evaluation and serving. The layer cannot be folded into its producer either.
`torch.func.replace_all_batch_norm_modules_` and some meta-learning code switch layers
to this mode and leave it in.

## Example
`nn.BatchNorm2d(64, track_running_stats=False)`; `model.eval()` does not change its
behaviour, and `torch.export` records it as `batch_norm(..., running_mean=None,
training=True)`.

## Fix
Train with `track_running_stats=True` (the default) so running statistics exist, or
estimate them after training (`torch.optim.swa_utils.update_bn(loader, model)` after
re-enabling tracking). If per-sample normalisation is what you want, use `GroupNorm`,
`LayerNorm` or `InstanceNorm`, which do not depend on the other samples in the batch.
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.graph import ModelGraph
from bnlint.rule import INFERENCE, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN004",
    name="batch-statistics-at-eval",
    severity=Severity.ERROR,
    since="0.1.0",
    phases=INFERENCE,
    needs=frozenset(),  # module attributes and inputs only: runs without edges too
)


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    for bn in graph.nodes_of("batch_norm"):
        untracked = bn.attrs.get("track_running_stats") is False
        missing = [role for role in ("mean", "var") if bn.input(role) is None]
        if not untracked and not missing:
            continue
        if untracked:
            reason = "track_running_stats=False"
        else:
            names = {"mean": "running_mean", "var": "running_var"}
            reason = " and ".join(names[role] for role in missing) + " missing"
        yield ctx.finding(
            bn,
            f"{bn.source_op} has no running statistics ({reason}): even in eval mode it "
            "normalises with the current batch's mean and variance, so each sample's "
            "output depends on the other samples in its batch",
            evidence={
                "track_running_stats": bn.attrs.get("track_running_stats"),
                "missing": [{"mean": "running_mean", "var": "running_var"}[r] for r in missing],
                "module_training": bn.attrs.get("training"),
                "module_class": bn.attrs.get("module_class"),
                "phase": ctx.phase,
            },
            fix="keep track_running_stats=True and train (or re-estimate) running statistics; "
            "use GroupNorm/LayerNorm/InstanceNorm for per-sample normalisation",
        )
