"""BatchNorm that computes batch statistics in a model meant for inference.

## What it detects
A BatchNormalization that runs in training mode in an inference graph: an ONNX node with
`training_mode=1` (opset 14+) or with the extra mean/variance outputs that mark training
in opsets 7-13 (`is_test=0` before opset 7); a PyTorch BN module left in train mode
inside a model in eval mode (mixed modes, e.g. after a sub-module's `.train()` call); a
graph traced or exported while its BN layers were training (`.pt2` with
`training=True`, a traced TorchScript archive with `training=True` baked into its code
even if `.eval()` was called afterwards). At warning severity: an ONNX BN that the
dynamo exporter took from a module in train mode and silently gave eval semantics.
Layers without running statistics (`track_running_stats=False`) are BN004's.

## Why it matters
In training mode BN normalises each channel with the statistics of the current batch, so
one sample's output depends on the other samples in its batch, a batch of one gives a
zero-variance channel, and the trained running statistics are ignored. Runtimes differ:
ONNX Runtime rejects some of these graphs, others run them and silently give different
numbers; optimizers that fold BN as if it were in inference mode produce wrong weights.
A dynamo export from a train-mode module looks correct but says the export pipeline
never called `eval()`, so dropout and other mode-dependent layers deserve a second look.

## Example
`torch.onnx.export(model, x, "m.onnx", training=torch.onnx.TrainingMode.TRAINING)`
produces `BatchNormalization(training_mode=1)` with three outputs;
`torch.jit.trace(model.train(), x)` bakes `training=True` into every `batch_norm` call.

## Fix
Call `model.eval()` before exporting or tracing (and export with the default
`TrainingMode.EVAL`); in PyTorch, find the module that was switched back to train mode
(a `.train()` call in a sub-module's `forward`, a freeze helper) and keep it in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.graph import ModelGraph, Node
from bnlint.rule import INFERENCE, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN003",
    name="batchnorm-training-mode-at-inference",
    severity=Severity.ERROR,
    since="0.1.0",
    phases=INFERENCE,
    needs=frozenset(),  # mode attributes only: also runs on module trees without edges
)


def _without_running_stats(bn: Node) -> bool:
    """Batch statistics by construction (BN004), whatever the mode."""
    return bn.attrs.get("track_running_stats") is False or bn.input("mean") is None


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    for bn in graph.nodes_of("batch_norm"):
        if _without_running_stats(bn):
            continue
        if bn.attrs.get("training"):
            how = bn.attrs.get("training_evidence", "training mode")
            yield ctx.finding(
                bn,
                f"{bn.source_op} runs in training mode ({how}) in a model meant for "
                "inference: it normalises with batch statistics instead of its running "
                "statistics",
                evidence={
                    "training_evidence": how,
                    "extra_outputs": bn.attrs.get("extra_outputs"),
                    "phase": ctx.phase,
                },
                fix="put the model in eval mode (model.eval()) before exporting, tracing or "
                "serving it",
            )
        elif bn.attrs.get("exported_in_training"):
            yield ctx.finding(
                bn,
                f"{bn.source_op} was exported from a module in train mode; the exporter "
                "silently gave it eval semantics (running statistics), so the export "
                "pipeline never called model.eval()",
                evidence={"exported_in_training": True, "phase": ctx.phase},
                fix="call model.eval() before torch.onnx.export and check other "
                "mode-dependent layers (dropout) in the exported graph",
                severity=Severity.WARNING,
            )
