"""In inference, a sample's output changes with the other samples in its batch.

## What it detects
With `--verify`, bnlint runs a few seeded samples through the model in inference mode,
each alone and inside a batch with other samples (with two different sets of companions
when the batch size is fixed), and compares each sample's outputs. When they differ
beyond tolerance, the finding names the BatchNorm that couples the samples: with ONNX
Runtime, the BN whose input still agrees while its output differs; otherwise the BNs
that compute batch statistics (training mode, or no running statistics). ONNX models run
in ONNX Runtime (the `ort` extra), PyTorch modules in torch.

## Why it matters
A served model must give a request the same answer whatever else is in its batch. A BN
that normalises with batch statistics makes every prediction depend on its neighbours:
results change with the batch size, with traffic, with padding samples, and a batch of
one gives a zero-variance channel. Static checks (BN003, BN004) see the usual causes;
this check proves the effect, including causes no rule models.

## Example
An ONNX graph exported with `training=TrainingMode.TRAINING`: its
`BatchNormalization(training_mode=1)` normalises each batch with its own mean and
variance, so sample 0 alone and sample 0 next to three others give different logits.

## Fix
Export or serve the model in eval mode (`model.eval()`, `TrainingMode.EVAL`), give BN
layers running statistics (`track_running_stats=True`, trained), and check the layer the
finding names.

## Options
`samples` is how many samples are checked (default 3), `batch-size` the batch they are
placed in when the batch dimension is free (default 4), `tolerance-scale` multiplies the
tolerance (1e-4 of the output's magnitude for float32, more for float16 and bfloat16).
Each sample costs two runs of the model, so at most 64 samples in a batch of at most 256
are used (a configuration found next to the models is data: `samples = 100000` would keep
a gate running for hours).
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.graph import ModelGraph
from bnlint.rule import INFERENCE, Finding, RuleContext, RuleSpec, Severity

MAX_SAMPLES, MAX_BATCH = 64, 256  # two runs per sample: bounded whatever the options say

RULE = RuleSpec(
    code="BN018",
    name="batch-dependent-output",
    severity=Severity.ERROR,
    since="0.1.0",
    phases=INFERENCE,
    needs=frozenset({"edges", "runtime"}),
    options={"samples": 3, "batch-size": 4, "tolerance-scale": 1.0},
)


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    if not ctx.verify:
        return
    from bnlint.analysis.batch_coupling import find_coupling
    from bnlint.runtime import RunnerUnavailable

    if graph.runner_factory is None:
        yield ctx.diagnostic("BN905", None, "BN018 needs a model it can run; this one cannot be")
        return
    try:
        outcome = find_coupling(
            graph,
            graph.runner_factory(),
            input_shapes=ctx.input_shapes,
            samples=min(MAX_SAMPLES, int(ctx.options.get("samples", 3))),
            batch=min(MAX_BATCH, max(2, int(ctx.options.get("batch-size", 4)))),
            tolerance_scale=float(ctx.options.get("tolerance-scale", 1.0)),
        )
    except RunnerUnavailable as error:
        yield ctx.diagnostic("BN905", None, f"BN018 could not run the model: {error}")
        return
    coupling = outcome.coupling
    if coupling is None:
        return
    evidence = {
        "sample": coupling.sample,
        "output": coupling.output,
        "batch_size": coupling.batch_size,
        "max_abs_error": coupling.max_abs,
        "max_rel_error": coupling.rel,
        "tolerance": coupling.tolerance,
        "located_by": coupling.located_by,
    }
    effect = (
        f"sample {coupling.sample}'s output {coupling.output!r} changes with its batch "
        f"companions by {coupling.max_abs:.3g} ({coupling.rel:.3g} of its magnitude)"
    )
    if not coupling.culprits:
        yield ctx.finding(
            None,
            f"in inference, {effect}; no BatchNorm could be identified as the cause",
            evidence=evidence,
            fix="find the operator that mixes samples (a reduction over the batch axis)",
        )
        return
    how = (
        "its input agrees across the two runs while its output does not"
        if coupling.located_by == "probe"
        else "it normalises with batch statistics"
    )
    for bn in coupling.culprits:
        yield ctx.finding(
            bn,
            f"{bn.source_op} couples the samples of a batch: {effect}; {how}",
            evidence=evidence,
            fix="run this BN with running statistics in inference (model.eval() before "
            "export; track_running_stats=True)",
        )
