"""Folding a BatchNorm would produce values the deployment dtype cannot hold or resolve.

## What it detects
For each inference-mode BatchNorm, the folded scale s = gamma / sqrt(var + eps) per channel
and, when the fold plan can fold the BN into a producer with constant weights, the folded
weight (W * s along the producer's output-channel axis: Conv axis 0, ConvTranspose axis 1
per group, Gemm axis 0 with transB else 1, MatMul the last axis; input channels for a
forward fold into the next Conv) and the folded bias (b - mean) * s + beta. Against the
`--target-dtype` (else the model's own dtype, float32 when unknown) it reports:
- scales, folded weights or folded biases beyond the dtype's largest value (float16 65504,
  bfloat16 about 3.39e38), and BN parameters (running statistics included) beyond it;
- nonzero scales below the dtype's smallest normal value (float16 6.1e-5): subnormal, with
  few significant bits, or flushed to zero; folded weight channels that become entirely
  subnormal;
- with `--target-dtype int8`, folded weights whose per-output-channel ranges are so spread
  that per-tensor int8 quantization leaves most channels with few levels: a channel is
  affected when its max |w| is below the layer's max / `int8-spread` (fewer than
  127 / `int8-spread` levels), and the layer is reported when at least
  `int8-affected-fraction` of its nonzero channels are affected.

- a running mean `mean-spread-bits` or more binary orders of magnitude away from zero in
  units of the running standard deviation (|mean| / sqrt(var + eps) >= 2^10 by default):
  the folded bias beta - mean * s cancels against the folded weights' output, and about
  log2 of that ratio significant bits of the dtype are lost. The unfolded BN subtracts the
  same mean, and every tool's fold loses the same bits: this is a precision hazard, not a
  wrong fold (BN012 stays silent). Channels whose variance is no larger than eps (a
  constant input) are left to BN006.

Channels whose folded weights and bias all lie below one rounding of the layer's largest
channel (pruned channels, gamma ~ 1e-30) are not reported as subnormal or flushed:
flushing them changes nothing the dtype can represent. Evidence carries the numbers: the
largest |scale|, |folded weight| and |folded bias|, the channels affected and, for int8,
the spread ratio. Channels with NaN, Inf or var + eps <= 0 are left to BN006.

## Why it matters
Fold passes compute in float32 and cast back: a channel with a tiny running variance gets a
huge scale that is still fine in float32 but becomes Inf in float16, and a scale below the
normal range loses its precision or becomes 0. TensorRT and Torch-TensorRT once computed
the BN scale in half precision (pytorch/TensorRT PR #1450); tensorflow-onnx fixed its fp16
BN fusion (PR #1106). For int8, the fold multiplies each output channel by its own scale,
so one outlier channel sets the per-tensor quantization step for all the others.

## Example
`var = 1e-12` in one channel of a float32 model deployed with `--target-dtype float16`:
s = 1e6 > 65504, so the folded Conv weight of that channel is Inf in float16.

## Fix
Re-estimate or clamp degenerate statistics before folding, keep the BN (or the affected
layer) in float32, or quantize the folded weights per output channel instead of per tensor.

## Options
- `int8-spread` (default 16.0): ratio of the layer's largest channel range to a channel's
  range beyond which that channel counts as losing precision.
- `int8-affected-fraction` (default 0.5): share of nonzero channels that must be affected.
- `mean-spread-bits` (default 10): report channels whose |mean| / sqrt(var + eps) reaches
  2 to this power (10: three decimal digits lost).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from bnlint.analysis import bn_screens as screens
from bnlint.analysis.bn_params import BN_ROLES, bn_params
from bnlint.analysis.channel_evidence import channel_list, describe
from bnlint.analysis.float_formats import (
    INT8_LEVELS,
    int8_channel_spread,
    range_findings,
    target_format,
)
from bnlint.analysis.folded_terms import folded_bias, folded_weight_absmax
from bnlint.fold import hazards, plan
from bnlint.fold.hazards import stats_kind
from bnlint.graph import ModelGraph
from bnlint.rule import INFERENCE, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN013",
    name="fold-precision-hazard",
    severity=Severity.WARNING,
    since="0.1.0",
    phases=INFERENCE,
    needs=frozenset({"parameters"}),
    options={"int8-spread": 16.0, "int8-affected-fraction": 0.5, "mean-spread-bits": 10.0},
)


_PARAM_KEYS = {"scale": "gamma", "bias": "beta", "mean": "running_mean", "var": "running_var"}


def _int8_spread(per_channel: np.ndarray, ctx: RuleContext, out: dict, msgs: list) -> None:
    spread = float(ctx.options["int8-spread"])
    found = int8_channel_spread(per_channel, spread)
    if found is None or found["affected_fraction"] < float(ctx.options["int8-affected-fraction"]):
        return
    out["int8"] = found
    msgs.append(
        f"per-tensor int8 would leave {found['affected']['count']} of {found['live_channels']} "
        f"channels {channel_list(found['affected'])} with < {INT8_LEVELS / spread:.0f} of "
        f"{INT8_LEVELS} levels (channel range spread {describe(found['spread_ratio'])}x)"
    )


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    verdicts = {verdict.bn.id: verdict for verdict in plan(graph)}
    bits = float(ctx.options["mean-spread-bits"])
    candidates = screens.fold_hazards(graph, verdicts, ctx.target_dtype, bits)  # None: all
    for bn in graph.nodes_of("batch_norm"):
        if bn.attrs.get("training"):
            continue  # batch statistics, not these parameters, are used (BN003)
        if candidates is not None and bn.id not in candidates:
            continue
        params = bn_params(graph, bn)
        scale = params.folded_scale()
        if scale is None or scale.size == 0:
            continue
        fmt, source = target_format(ctx.target_dtype, params.dtype)
        evidence: dict[str, Any] = {"target_dtype": fmt.name, "dtype_source": source}
        if ctx.target_dtype == "int8":
            evidence["quantization"] = "int8"
        msgs: list[str] = []
        valid = np.isfinite(scale)
        evidence["max_abs_folded_scale"] = (
            float(np.abs(scale[valid]).max()) if valid.any() else None
        )
        verdict = verdicts.get(bn.id)
        weights = bias = negligible = None
        foldable = verdict is not None and verdict.foldable and verdict.producer is not None
        if foldable:
            kind, producer = stats_kind(verdict.kind), verdict.producer
            evidence["folded_into"] = producer.display_name
            weights = folded_weight_absmax(graph, kind, producer, np.where(valid, scale, 0.0))
            bias = folded_bias(graph, kind, producer, verdict.add, params, scale)
            negligible = hazards.negligible_channels(
                weights, bias, hazards.fan_in(graph, producer, scale.size), fmt.name
            )
        if fmt.name != "float64":
            for role in BN_ROLES:
                values = params.get(role)
                if values is not None:
                    range_findings(_PARAM_KEYS[role], values, fmt, evidence, msgs, False)
            folded_scale = np.where(valid, scale, 0.0)
            range_findings("folded_scale", folded_scale, fmt, evidence, msgs, True, negligible)
        if weights is not None:
            finite = weights[np.isfinite(weights)]
            evidence["max_abs_folded_weight"] = float(finite.max()) if finite.size else None
            if fmt.name != "float64":
                range_findings("folded_weight", weights, fmt, evidence, msgs, True, negligible)
            if ctx.target_dtype == "int8":
                _int8_spread(weights, ctx, evidence, msgs)
        if bias is not None and np.isfinite(bias).any():
            evidence["max_abs_folded_bias"] = float(np.abs(bias[np.isfinite(bias)]).max())
            if fmt.name != "float64":
                range_findings("folded_bias", bias, fmt, evidence, msgs, False)
        spread = hazards.mean_spread(params, bits, fmt.name)
        if spread is not None:
            evidence["mean_spread"] = spread
            msgs.append(hazards.describe_spread(spread, fmt.name))
        if msgs:
            target = "int8" if ctx.target_dtype == "int8" else fmt.name
            yield ctx.finding(
                bn,
                f"folding for {target}: " + "; ".join(msgs),
                evidence=evidence,
                fix="re-estimate or clamp degenerate statistics, keep this layer in float32, "
                "or quantize folded weights per output channel",
            )
