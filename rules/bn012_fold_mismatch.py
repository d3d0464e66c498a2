"""Folding a BatchNorm into its neighbour changes what the model computes: a wrong fold.

## What it detects
With `--verify`, bnlint folds every foldable BN on a copy of the model (as `bnlint fold`
would) and verifies the copy; `bnlint verify FOLDED --against ORIGINAL` verifies a fold
made by any tool. Both models are cut into regions at the tensors they share, and every
changed region is evaluated on both sides on the same seeded probe: in float64 by
bnlint's own evaluator (the algebraic level: the folded region may differ from the
original by at most 8 roundings of the terms that make each element, so a correct fold
of any fan-in passes and pruned channels that underflow read as nothing), then in ONNX
Runtime or torch (the numeric level: the folded region's error within 4 times the
original's own error against the float64 result), then the whole models beside a null
fold of the original. BN012 reports a fold that fails: the BN, the tensor, the error, the
bound and the margin, and the bug class when the folded numbers match one (wrong axis,
groups ignored, eps ignored, bias not scaled, Gemm beta ignored, float16 precision,
overflow, BN applied twice, a shared weight rescaled in place). A correct fold is no
finding: every BN's verdict is in the report's verification section.

## Why it matters
A fold is only free if it is exact. Folding fails in practice: float16 weights overflow
when gamma / sqrt(var + eps) is large, and several optimizers have shipped folds on the
wrong weight axis, without the group offset, without eps, ignoring a Gemm's beta, or
rescaling a weight another node still reads. None of that is visible in the graph; only
evaluating what the folded model computes shows it.

## Example
A float16 Conv + BN whose running variance is 1e-8 with eps 1e-9: gamma / sqrt(var + eps)
is about 1e4, the folded weights exceed float16's 65504 and become infinite; BN012 names
the BN with problem `overflow`, error `Infinity` against its bound.

## Fix
Keep that BN unfolded (`bnlint fold --keep NAME`), fold in float32 and convert the
deployed model's precision afterwards with the BN's range in mind (see BN013), or fix the
statistics (BN006). For folds made by another tool, use a fold that verifies
(`bnlint fold`).

## Options
`tolerance-scale` multiplies the numeric and model-output bounds (default 1.0).
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.fold import plan
from bnlint.graph import ModelGraph
from bnlint.rule import INFERENCE, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN012",
    name="fold-mismatch",
    severity=Severity.ERROR,
    since="0.1.0",
    phases=INFERENCE,
    needs=frozenset({"edges", "parameters", "runtime"}),
    options={"tolerance-scale": 1.0},
)


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    if not ctx.verify or not any(verdict.foldable for verdict in plan(graph)):
        return
    # The fold engine (onnx, the reference evaluator) loads only when --verify asks for it.
    from bnlint.fold import FoldError, record_findings, verify_graph

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
