"""Folding a BatchNorm into its neighbour changes the model's outputs beyond tolerance.

## What it detects
With `--verify`, bnlint folds every foldable BN on a copy of the model (as `bnlint fold`
would) and verifies the copy at two levels. Algebraic, without a runtime: per output
channel and in float64, the folded weight over the original must equal
gamma / sqrt(var + eps) along the layout's output-channel axis (Conv axis 0,
ConvTranspose axis 1 within each group, Gemm/MatMul the output features) and the bias
must be b * m + beta - mean * m, within a few units of rounding of the model's dtype.
Numeric: original and folded model run on seeded inputs (ONNX Runtime with graph
optimizations disabled, or torch for PyTorch modules); the tensors around each fold are
compared against a tolerance relative to their magnitude (2e-6 for float32, scaled by
the unit roundoff for float16 and bfloat16). Each failing BN is reported with the level
that failed, the worst model output, the maximum absolute and relative error and the
minimum tolerance that would have passed. `bnlint verify FOLDED --against ORIGINAL`
reports the same finding for folds made by other tools, naming the bug class.

## Why it matters
A fold is only free if it is exact. Folding fails in practice: float16 weights overflow
when gamma / sqrt(var + eps) is large, a running mean far larger than the running
spread makes the folded bias cancel catastrophically, and several optimizers have shipped
folds on the wrong weight axis, without the group offset, without eps, or ignoring a
Gemm's beta. None of that is visible in the graph; only verification shows it.

## Example
A float16 Conv + BN whose running variance is 1e-8 with eps 1e-9: gamma / sqrt(var + eps)
is about 1e4, the folded weights exceed float16's 65504 and become infinite; BN012 names
the BN, with weight error `inf` at the algebraic level.

## Fix
Keep that BN unfolded (`bnlint fold --keep NAME`), fold in float32 and convert the
deployed model's precision afterwards with the BN's range in mind (see BN013), or fix the
statistics (BN006). For folds made by another tool, use a fold that verifies
(`bnlint fold`).

## Options
`tolerance-scale` multiplies the numeric tolerance of every dtype (default 1.0).
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.fold import FoldError, plan, record_findings, verify_graph
from bnlint.graph import ModelGraph
from bnlint.rule import INFERENCE, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN012",
    name="fold-mismatch",
    severity=Severity.ERROR,
    since="0.1.0",
    phases=INFERENCE,
    needs=frozenset({"edges", "parameters"}),
    options={"tolerance-scale": 1.0},
)


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    if not ctx.verify or not any(verdict.foldable for verdict in plan(graph)):
        return
    try:
        result = verify_graph(
            graph,
            input_shapes=ctx.input_shapes,
            tolerance_scale=float(ctx.options.get("tolerance-scale", 1.0)),
        )
    except FoldError as error:
        yield ctx.diagnostic("BN905", None, f"fold verification could not run: {error}")
        return
    verification = result.verification
    if verification.numeric_skipped:
        yield ctx.diagnostic(
            "BN905",
            None,
            f"fold verification ran at the algebraic level only: {verification.numeric_skipped}",
            evidence={"level": "algebraic", "reason": verification.numeric_skipped},
        )
    yield from record_findings(verification, ctx)
