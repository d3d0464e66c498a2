"""BatchNorm running statistics that were never updated from data.

## What it detects
A BatchNorm whose running mean is 0 and running variance is 1 in every channel (the
values PyTorch, Keras and ONNX exporters initialise them to, exactly or within the
storage dtype's rounding), or whose `num_batches_tracked` counter is 0 while the
statistics still hold those initial values. A counter of 0 next to clearly trained
statistics (converted checkpoints, FrozenBatchNorm, statistics copied in by hand) is not
reported: the statistics decide, the counter only corroborates. Runs on models meant for
inference and on bare weights without a phase; in training and fine-tuning fresh
statistics are expected, so the rule is silent there.

## Why it matters
At inference BN normalises with its running statistics. Mean 0 and variance 1 turn it
into a plain affine map, so activations reach the next layer unnormalised and accuracy
collapses, while the model still runs and produces confident-looking outputs. Typical
causes: the model was exported straight after construction, a checkpoint was loaded with
`strict=False` and the `running_*` buffers did not match, a new head was added after
training, or weights were quantized or pruned and the statistics never re-estimated.

## Example
`model = ResNet(); model.load_state_dict(sd, strict=False)` with renamed keys, then
`torch.onnx.export(model.eval(), ...)`: every BatchNormalization has mean 0, variance 1.

## Fix
Load the checkpoint with `strict=True` and check the missing keys; otherwise re-estimate
the statistics: run a few hundred training batches through the model in train mode under
`torch.no_grad()` (or use AIMET/NNCF BN re-estimation), then switch to eval and export.
If the layer is an affine-only BatchNorm written on purpose by a converter, ignore BN005
for that node.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bnlint.analysis import bn_screens as screens
from bnlint.analysis.bn_params import BNParams, bn_params
from bnlint.analysis.float_formats import float_format
from bnlint.graph import ModelGraph, Node
from bnlint.rule import INFERENCE, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN005",
    name="untrained-running-stats",
    severity=Severity.WARNING,
    since="0.1.0",
    phases=INFERENCE,
    needs=frozenset({"parameters"}),
    runs_without_phase=True,
)


def _tolerance(params: BNParams) -> float:
    """Initial values are exact; allow the storage dtype's rounding and float32 noise."""
    fmt = float_format(params.param_dtype)
    resolution = 0.0 if fmt is None or fmt.name in ("float32", "float64") else 2.0**-10
    return max(1e-6, resolution)


def _is_initial(params: BNParams) -> bool:
    tol = _tolerance(params)
    mean, var = params.mean, params.var
    assert mean is not None and var is not None
    return bool(
        mean.size and var.size and np.all(np.abs(mean) <= tol) and np.all(np.abs(var - 1.0) <= tol)
    )


def _is_default_affine(params: BNParams) -> bool:
    scale, bias = params.scale, params.bias
    return (scale is None or bool(np.all(scale == 1.0))) and (
        bias is None or bool(np.all(bias == 0.0))
    )


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    bns = graph.nodes_of("batch_norm")
    candidates = screens.untrained(graph)  # every BN this rule could report, vectorised
    untrained = []
    for bn in bns:
        if bn.attrs.get("track_running_stats") is False:
            continue  # no running statistics at all: BN004's finding
        if bn.id not in candidates:
            continue
        params = bn_params(graph, bn)
        if params.has_statistics and _is_initial(params):
            untrained.append((bn, params))
    for bn, params in untrained:
        yield _finding(ctx, bn, params, f"{len(untrained)} of {len(bns)}")


def _finding(ctx: RuleContext, bn: Node, params: BNParams, share: str) -> Finding:
    counter = bn.attrs.get("num_batches_tracked")
    evidence: dict = {"num_batches_tracked": counter, "untrained_layers": share}
    fix = (
        "load the trained running statistics, or re-estimate them on training data in "
        "train mode before exporting"
    )
    assert params.mean is not None and params.var is not None
    default_affine = _is_default_affine(params)
    if default_affine:
        what = "its scale and bias are at their initial values too: the layer was never trained"
    else:
        what = (
            "its scale and bias were trained, so the statistics were lost (a checkpoint "
            "loaded without its running_* buffers?) or never estimated"
        )
    counter_note = " and num_batches_tracked is 0" if counter == 0 else ""
    evidence.update(
        channels=int(params.var.size),
        max_abs_mean=float(np.abs(params.mean).max()),
        max_abs_var_minus_1=float(np.abs(params.var - 1.0).max()),
        affine_at_initial_values=default_affine,
    )
    return ctx.finding(
        bn,
        f"running mean is 0 and running variance is 1 in all {params.var.size} channels"
        f"{counter_note}: {what}",
        evidence=evidence,
        fix=fix,
    )
