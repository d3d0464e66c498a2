"""BatchNorm statistics or affine parameters that make the layer divide by zero or emit NaN.

## What it detects
Per BatchNorm, in float64 from the stored parameters:
- NaN or Inf in the scale, bias, running mean or running variance (error);
- a negative running variance (error: a variance cannot be negative, so the buffer was
  corrupted, overwritten or mis-converted);
- `var + eps <= 0` (error: a zero variance with `eps = 0` divides by zero);
- `var + eps` so small in the dtype the layer computes in (its input's, else its
  parameters') that it rounds to 0 or that `1 / sqrt(var + eps)` overflows it (error;
  e.g. float16, where the largest value is 65504);
- dead channels (info, reported only when nothing above applies): a scale (gamma) of
  exactly 0, whose output is the constant beta, or a running variance of exactly 0 with
  `eps <= 0.01`, a channel that was constant during training and whose gain at inference is
  gamma / sqrt(eps), at least 10 × gamma.

Evidence lists, per problem, the number of channels, the first channel indices and the
extreme values. The rule needs only the parameters, so it also runs on bare weights.

## Why it matters
Inference BN computes (x - mean) * gamma / sqrt(var + eps) + beta. A negative or zero
`var + eps` gives NaN or Inf in every output of that channel, which then spreads through
the network. No optimizer checks this: onnxoptimizer, onnxsim, ONNX Runtime and torch
fusion all fold such a BN and propagate the Inf into the folded weights. FrozenBatchNorm
with `eps = 0` produced NaNs in float16 once tiny variances underflowed to zero
(pytorch/vision #2599).

## Example
A checkpoint converted with a wrong buffer mapping stores `running_var = [-0.3, 1.2, ...]`;
or a FrozenBatchNorm2d with `eps=0` has a channel whose running variance is 0.

## Fix
Repair the source of the statistics (conversion script, buffer mapping, overflowing
statistics in a float16 training run), re-estimate them on training data, or use a
positive eps (1e-5). Dead channels can usually be pruned; if they are intended, ignore
the info finding for that node.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from bnlint.analysis import bn_screens as screens
from bnlint.analysis.bn_params import BN_ROLES, BNParams, bn_params
from bnlint.analysis.channel_evidence import channel_list, channel_summary, describe
from bnlint.analysis.float_formats import float_format
from bnlint.graph import ModelGraph
from bnlint.rule import ALL_PHASES, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN006",
    name="degenerate-running-variance",
    severity=Severity.ERROR,
    since="0.1.0",
    phases=ALL_PHASES,
    needs=frozenset({"parameters"}),
    runs_without_phase=True,
)
DEAD_VARIANCE_MAX_EPS = 0.01
_ROLE_LABEL = {"scale": "scale", "bias": "bias", "mean": "running mean", "var": "running variance"}


def _errors(params: BNParams) -> tuple[list[str], dict[str, Any]]:
    messages: list[str] = []
    evidence: dict[str, Any] = {}
    non_finite = {}
    for role in BN_ROLES:
        values = params.get(role)
        if values is not None and not np.all(np.isfinite(values)):
            mask = ~np.isfinite(values)
            non_finite[role] = channel_summary(mask)
            non_finite[role]["nan"] = int(np.isnan(values).sum())
            shown = channel_list(non_finite[role])
            messages.append(
                f"{_ROLE_LABEL[role]} has NaN/Inf in {int(mask.sum())} channel(s) {shown}"
            )
    if non_finite:
        evidence["non_finite"] = non_finite
    var = params.var
    if var is None:
        return messages, evidence
    finite = np.isfinite(var)
    negative = finite & (var < 0)
    if negative.any():
        found = evidence["negative_variance"] = channel_summary(negative, var)
        messages.append(
            f"running variance is negative in {found['count']} channel(s) "
            f"{channel_list(found)} (min {describe(float(var[negative].min()))})"
        )
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        total = var + params.eps
        not_positive = finite & ~negative & (total <= 0)
        if not_positive.any():
            evidence["variance_plus_eps_not_positive"] = channel_summary(not_positive, total)
            messages.append(
                f"var + eps <= 0 in {int(not_positive.sum())} channel(s) "
                f"{channel_list(evidence['variance_plus_eps_not_positive'])} (eps = {params.eps:g})"
            )
        fmt = float_format(params.dtype)
        if fmt is not None and fmt.name != "float64":
            stored = fmt.round(fmt.round(var) + fmt.round(params.eps))
            overflow = finite & (total > 0) & ((stored <= 0) | (1.0 / np.sqrt(stored) > fmt.max))
            if overflow.any():
                evidence["inverse_sqrt_overflow"] = channel_summary(overflow, total)
                messages.append(
                    f"var + eps is so small in {fmt.name} ({int(overflow.sum())} channel(s) "
                    f"{channel_list(evidence['inverse_sqrt_overflow'])}, min "
                    f"{describe(float(total[overflow].min()))}) that 1/sqrt(var + eps) "
                    f"exceeds {fmt.name}'s range"
                )
    return messages, evidence


def _dead_channels(params: BNParams) -> dict[str, Any]:
    dead: dict[str, Any] = {}
    if params.scale is not None and (params.scale == 0).any():
        dead["zero_scale"] = channel_summary(params.scale == 0)
    if params.var is not None and 0 < params.eps <= DEAD_VARIANCE_MAX_EPS:
        zero_var = params.var == 0
        if zero_var.any():
            dead["zero_variance"] = channel_summary(zero_var)
            dead["zero_variance"]["gain_factor"] = float(1 / np.sqrt(params.eps))
    return dead


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    candidates = screens.degenerate(graph)  # every BN this rule could report, vectorised
    for bn in graph.nodes_of("batch_norm"):
        if bn.id not in candidates:
            continue
        params = bn_params(graph, bn)
        messages, evidence = _errors(params)
        dead = _dead_channels(params)
        common = {"eps": params.eps, "dtype": params.dtype}
        finite_var = params.var[np.isfinite(params.var)] if params.var is not None else None
        if finite_var is not None and finite_var.size:
            common["min_variance"] = float(finite_var.min())
        if messages:
            yield ctx.finding(
                bn,
                "; ".join(messages),
                evidence={"problems": sorted(evidence), **common, **evidence, "dead": dead},
                fix="repair or re-estimate the statistics; use a positive eps such as 1e-5",
            )
        elif dead:
            parts = []
            if "zero_scale" in dead:
                z = dead["zero_scale"]
                parts.append(f"scale is 0 in {z['count']} channel(s) {channel_list(z)}")
            if "zero_variance" in dead:
                z = dead["zero_variance"]
                parts.append(
                    f"running variance is 0 in {z['count']} channel(s) {channel_list(z)} "
                    f"(gain {z['gain_factor']:.0f} x scale at inference)"
                )
            yield ctx.finding(
                bn,
                "dead channels: " + "; ".join(parts),
                evidence={"problems": ["dead-channels"], **common, "dead": dead},
                fix="prune the dead channels, or ignore BN006 for this node if they are intended",
                severity=Severity.INFO,
            )
