"""BatchNorm parameters that are also graph inputs, so a runtime or simplifier may replace them.

## What it detects
A BatchNormalization whose scale, bias, running mean or running variance is an
initializer that is also listed among the graph's inputs: the stored value is only a
default that the caller may override at run time. One finding per BN lists the
overridable parameters. Models with ONNX IR version < 4, where the specification
required every initializer to be a graph input, get an info finding instead: there the
listing means nothing (ONNX Runtime treats such initializers as constants and folds the
BN, and so does bnlint), but a tool that applies a newer IR's rules may not.
Inference phase only: the hazard concerns graphs being optimised and deployed.

## Why it matters
An overridable parameter is not a constant, so ONNX Runtime and onnxscript will not fold
the BN into its Conv, and tools disagree about it: onnxsim and OnnxSlim treat the value as
frozen, fold it and drop the inputs, which silently changes the model's interface, while
a runtime fed a different value computes something else than the model was validated
with. The BN also keeps its own kernel at inference (see BN011).

## Example
`torch.onnx.export(model, x, "m.onnx", keep_initializers_as_inputs=True)` lists every
weight, including `bn1.running_mean` and `bn1.running_var`, in `graph.input`.

## Fix
Export without `keep_initializers_as_inputs` (or with IR version >= 4), or remove the
initializers from `graph.input` (onnxruntime's `remove_initializer_from_input.py` does this);
keep as inputs only the parameters that are meant to be fed at run time.
"""

from __future__ import annotations

from collections.abc import Iterator

from bnlint.analysis.bn_params import BN_ROLES
from bnlint.graph import ModelGraph
from bnlint.rule import INFERENCE, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN020",
    name="overridable-bn-parameters",
    severity=Severity.WARNING,
    since="0.1.0",
    phases=INFERENCE,
)
FIRST_IR_WITHOUT_INPUT_REQUIREMENT = 4


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    ir_version = graph.facts.ir_version
    legacy = ir_version is not None and 0 < ir_version < FIRST_IR_WITHOUT_INPUT_REQUIREMENT
    for bn in graph.nodes_of("batch_norm"):
        overridable = {}
        for role in BN_ROLES:
            name = bn.input(role)
            record = graph.tensors.get(name) if name else None
            listed = record is not None and (record.is_graph_input or record.listed_as_input)
            if listed and name in graph.params:
                overridable[role] = name
        if not overridable:
            continue
        names = ", ".join(f"{role} {name!r}" for role, name in overridable.items())
        message = (
            f"{bn.source_op} {names} {'is' if len(overridable) == 1 else 'are'} also graph "
            "input(s): a caller can override them, runtimes will not fold this BN and "
            "simplifiers may freeze and drop them"
        )
        if legacy:
            message = (
                f"{bn.source_op} {names} {'is' if len(overridable) == 1 else 'are'} listed "
                f"among the graph inputs: IR version {ir_version} < 4 required every "
                "initializer to be a graph input, and runtimes treat them as constants, but "
                "a tool applying a newer IR's rules may not (re-export with a newer IR)"
            )
        yield ctx.finding(
            bn,
            message,
            evidence={"parameters": overridable, "ir_version": ir_version, "legacy_ir": legacy},
            fix="export without keep_initializers_as_inputs, or remove these initializers "
            "from graph.input",
            severity=Severity.INFO if legacy else None,
        )
