"""A BatchNorm in an inference graph that could be folded away, or why it cannot.

## What it detects
Every BatchNormalization left in an inference graph, with the fold plan's verdict: either
the Conv, ConvTranspose, Gemm or MatMul (+ Add) whose weights can absorb it (or, where
exact, the following Conv), or the precondition that prevents folding: training mode,
parameters that are graph inputs or computed at run time, a producer whose output has
other consumers or is a graph output, a producer without weights, a channel mismatch.

This rule is **opt-in**: a foldable BatchNorm is an opportunity, not a defect, so by
default the run's summary says how many BatchNorms can be folded ("53 of 53 BatchNorms
can be folded: `bnlint fold …`") instead of one finding per layer. Select it by code or
name (`--select BN011`, `--extend-select foldable-batchnorm`; `ALL` and prefixes leave it
off) to get each BatchNorm's verdict, or run `bnlint fold MODEL --dry-run`. A BatchNorm
that cannot be folded because of a defect another rule reports on it (training mode:
BN003, no running statistics: BN004, NaN statistics: BN006, a parameter that is a graph
input: BN020, wrong axis: BN009, channel mismatch: BN010) is left to that rule.

## Why it matters
At inference BN is a per-channel affine map, so folding it into the neighbouring layer
removes a memory-bound operator for free. Optimizers (onnxoptimizer, onnxsim, ONNX
Runtime, torch fusion) each fold a different subset and skip the rest silently; a BN that
stays in a deployed graph costs latency, and on integer accelerators it often blocks
quantization of the layer.

## Example
`Conv -> BatchNormalization -> Relu` exported with BN preserved: the BN can be folded into
the Conv. `Conv -> (BatchNormalization, Add)`: the Conv output has two consumers, so
folding would change the Add's input; the finding says so.

## Fix
Run `bnlint fold model.onnx -o folded.onnx` (verified) or fold at export time. For BNs
that cannot be folded, the message names the obstacle; restructure the graph or accept
the BN (ignore BN011 for that node).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from bnlint.fold import KIND_LABEL, plan
from bnlint.graph import ModelGraph
from bnlint.rule import INFERENCE, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN011",
    name="foldable-batchnorm",
    severity=Severity.INFO,
    since="0.1.0",
    phases=INFERENCE,
    needs=frozenset({"producer_edges"}),  # the BN's producer: read or inferred is enough
    enabled_by_default=False,
)

# The fold plan names the rule that reports a blocking defect ("…, see BN003").
_CAUSE = re.compile(r"\bsee (BN\d{3})\b")


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    for verdict in plan(graph):
        bn = verdict.bn
        producer = verdict.producer.display_name if verdict.producer is not None else None
        evidence = {
            "foldable": verdict.foldable,
            "kind": verdict.kind,
            "producer": producer,
            "reason_code": verdict.reason_code,
            "channels": verdict.channels,
            "notes": list(verdict.notes),
        }
        if verdict.foldable:
            label = KIND_LABEL[verdict.kind or "conv"]
            yield ctx.finding(
                bn,
                f"{bn.source_op} can be folded into {label} {producer!r}",
                evidence=evidence,
                fix="fold it: bnlint fold MODEL -o FOLDED (verifies the result)",
            )
        else:
            cause = _CAUSE.search(verdict.reason or "")
            yield ctx.finding(
                bn,
                f"{bn.source_op} cannot be folded: {verdict.reason}",
                evidence=evidence,
                fix="remove the obstacle named above if this BN should disappear at inference",
                cause=cause.group(1) if cause else None,
            )
