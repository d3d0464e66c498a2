"""A BatchNorm's running statistics do not describe the data the model is served.

## What it detects
With `--sample-data FILE` (a `.npz` of arrays keyed by input name, or a `.npy` for a
single-input model; the first axis indexes samples), bnlint runs the model on the samples
(ONNX Runtime for ONNX, torch for PyTorch) and measures, for every BatchNorm in inference
mode, the mean and variance of its input per channel. Per channel it compares them with
the running statistics: the standardized mean shift `|mean_data - running_mean| /
sqrt(running_var + eps)` and the variance ratio `(var_data + eps) / (running_var + eps)`.
A channel counts only when its estimate exceeds a threshold by more than its sampling
error allows (errors from the spread between samples, a one-sided test at `confidence`;
below 30 samples, distribution-free bounds that only gross drift passes); a layer is
reported when more of its channels are beyond a threshold than chance could give (a
binomial test, corrected for the number of layers). Layers are reported in graph order,
and the first mismatching layer gets a cause: at the first BN, the preprocessing (a scale
factor, a per-channel offset, a channel permutation, or scale and offset are each fitted
and re-tested, and the simplest that explains the data is named); deeper, below layers
that match, statistics gone stale. Too few samples for a confident verdict give a BN905
note saying how many would do.

## Why it matters
Running statistics are estimated on the training data, and at inference they normalise
whatever arrives. Inputs left in 0-255 instead of 0-1, BGR instead of RGB, a new sensor,
or a backbone fine-tuned in eval mode (weights moved, statistics did not) shift every
activation after the first mismatching layer, silently: nothing fails, accuracy just drops.

## Example
A CNN trained on inputs in [0, 1], served camera frames in [0, 255]:
`bnlint model.onnx --sample-data frames.npz` reports the first BN with "an input-scale
mismatch: the served inputs look 255x the training inputs", and every BN after it.

## Fix
At the first BN, fix the serving preprocessing to match training (the finding names the
scale, offset or channel order). Deeper, fine-tune with the BatchNorms in train mode, or
re-estimate the statistics on representative data with
`bnlint recalibrate MODEL --sample-data FILE -o OUT` and check the accuracy: weights
fine-tuned against stale statistics may need a short fine-tune after.

## Options
`mean-shift` is the standardized mean shift that matters (default 0.5 running standard
deviations), `variance-ratio` the variance ratio that matters either way (default 2.0),
`confidence` the one-sided confidence per channel and the model-wide chance of a false
report (default 0.99), `min-fraction` the smallest fraction of a layer's channels that
makes it a mismatch (default 0.05).
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.graph import ModelGraph
from bnlint.rule import INFERENCE, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN021",
    name="running-stats-data-mismatch",
    severity=Severity.WARNING,
    since="0.2.0",
    phases=INFERENCE,
    needs=frozenset({"edges", "samples"}),
    options={"mean-shift": 0.5, "variance-ratio": 2.0, "confidence": 0.99, "min-fraction": 0.05},
)


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    if not ctx.sample_data:
        return
    from bnlint.drift.check import drift_profile
    from bnlint.drift.findings import drift_findings
    from bnlint.drift.profile import Thresholds
    from bnlint.runtime import RunnerUnavailable

    thresholds = Thresholds.from_options(ctx.options)
    try:
        profile = drift_profile(graph, ctx.sample_data, thresholds)
    except RunnerUnavailable as error:
        yield ctx.diagnostic("BN905", None, f"BN021 could not run the model: {error}")
        return
    yield from drift_findings(profile, ctx)
