"""BatchNorm that computes batch statistics in a model meant for inference.

## What it detects
A BatchNormalization that runs in training mode in an inference graph: an ONNX node with
`training_mode=1` (opset 14+) or with the extra mean/variance outputs that mark training
in opsets 7-13 (`is_test=0` before opset 7); a PyTorch BN module left in train mode
inside a model in eval mode; a graph traced or exported while its BN layers were training.

## Why it matters
In training mode BN normalises each channel with the statistics of the current batch, so
one sample's output depends on the other samples in its batch, a batch of one gives a
zero-variance channel, and the trained running statistics are ignored. Runtimes differ:
ONNX Runtime rejects some of these graphs, others run them and silently give different
numbers; optimizers that fold BN as if it were in inference mode produce wrong weights.

## Example
`torch.onnx.export(model, x, "m.onnx", training=torch.onnx.TrainingMode.TRAINING)`
produces `BatchNormalization(training_mode=1)` with three outputs.

## Fix
Call `model.eval()` before exporting or tracing (and export with the default
`TrainingMode.EVAL`); in PyTorch, find the module that was switched back to train mode
(a `.train()` call in a sub-module's `forward`, a freeze helper) and keep it in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.graph import ModelGraph
from bnlint.rule import INFERENCE, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN003",
    name="batchnorm-training-mode-at-inference",
    severity=Severity.ERROR,
    since="0.1.0",
    phases=INFERENCE,
)


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    for bn in graph.nodes_of("batch_norm"):
        if not bn.attrs.get("training"):
            continue
        how = bn.attrs.get("training_evidence", "training mode")
        yield ctx.finding(
            bn,
            f"{bn.source_op} runs in training mode ({how}) in a model meant for inference: "
            "it normalises with batch statistics instead of its running statistics",
            evidence={
                "training_evidence": how,
                "extra_outputs": bn.attrs.get("extra_outputs"),
                "phase": ctx.phase,
            },
            fix="put the model in eval mode (model.eval()) before exporting, tracing or serving it",
        )
