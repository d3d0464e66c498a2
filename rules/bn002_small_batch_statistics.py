"""A BatchNorm that trains on too few values per channel to estimate its statistics.

## What it detects
In a model meant for training or fine-tuning, a BatchNorm that computes batch statistics
from a mini-batch that is too small. The values each channel's mean and variance are
computed from are `batch × the product of the dims after the channel axis` of the BN
input. It reports a BN whose batch is below `min-batch-size`, or whose values per channel
are below `min-values-per-channel`, and is an error when a channel sees a single value
(a BN after global pooling, or BatchNorm1d on (N, C) features, at batch 1).
The batch comes from `--train-batch-size` (per device), else from the batch the model file
declares (the input shape or example input, named in the evidence), else from
`--input-shape`; a BN whose input was reshaped so that its leading dim is a multiple of the
batch (tokens flattened into rows) gets that multiple. When the batch is symbolic and none
was given, the rule reports BN904 input-shape-needed once for the model.
BNs that do not compute batch statistics (frozen BN in eval mode inside a training model)
are skipped when the model says which those are; a graph without mode information is taken
to train every BN, as the phase says. SyncBatchNorm is skipped: its statistics span every
device, so the per-device batch understates them.

## Why it matters
A BN normalizes each channel with its batch mean and variance. With few samples these
estimates are noisy, so the layer injects noise into training and its running statistics
drift from what the model sees at inference; Wu & He (Group Normalization, ECCV 2018)
measure BN's ImageNet error rising sharply below 8-16 images per device. With exactly one
value per channel the variance is zero: PyTorch raises "Expected more than 1 value per
channel when training", and other runtimes silently output the BN bias.

## Example
`nn.BatchNorm1d(512)` after `AdaptiveAvgPool2d(1)` and `flatten` trained with
`--train-batch-size 1`: each channel sees 1 value (error). A detection backbone trained
with 2 images per GPU: every BN sees batch 2 (warning).

## Fix
Increase the per-device batch (gradient accumulation does not help BN), use
SyncBatchNorm across devices, freeze the BN layers (eval mode, as detection frameworks do
with FrozenBatchNorm2d), or switch to GroupNorm/LayerNorm, which do not depend on the batch.

## Options
- `min-batch-size` (default 8): warn when the per-device batch is smaller.
- `min-values-per-channel` (default 16): warn when a channel's statistics come from fewer
  values (batch × spatial positions).
"""

from __future__ import annotations

from collections.abc import Iterator
from math import prod

from bnlint.analysis.graph_walks import data_input
from bnlint.graph import ModelGraph, Node
from bnlint.rule import TRAINING_PHASES, Finding, RuleContext, RuleSpec, Severity

RULE = RuleSpec(
    code="BN002",
    name="small-batch-statistics",
    severity=Severity.WARNING,
    since="0.1.0",
    phases=TRAINING_PHASES,
    needs=frozenset({"producer_edges"}),  # the BN's input shape: read or inferred
    options={"min-batch-size": 8, "min-values-per-channel": 16},
)


def _declared_batch(graph: ModelGraph) -> tuple[int | None, str | None]:
    known = graph.facts.batch_sizes
    for name in [*graph.graph_inputs, *known]:
        if name in known:
            return known[name].value, known[name].source
    return None, None


def _batch(graph: ModelGraph, ctx: RuleContext) -> tuple[int | None, str | None]:
    if ctx.train_batch_size:
        return ctx.train_batch_size, "--train-batch-size"
    value, source = _declared_batch(graph)
    if value is not None:
        return value, source
    for shape in ctx.input_shapes.values():
        if shape and isinstance(shape[0], int) and shape[0] > 0:
            return shape[0], "--input-shape"
    return None, None


def _computes_batch_statistics(graph: ModelGraph) -> list[Node]:
    bns = graph.nodes_of("batch_norm")
    explicit = graph.facts.mode == "training" or any(bn.attrs.get("training") for bn in bns)
    return [
        bn
        for bn in bns
        if "SyncBatchNorm" not in bn.source_op
        and (
            not explicit or bn.attrs.get("training") or bn.attrs.get("track_running_stats") is False
        )
    ]


def _values_per_channel(
    graph: ModelGraph, bn: Node, batch: int, declared: int | None
) -> tuple[int, bool]:
    """(values per channel or a lower bound, whether the value is exact)."""
    shape = graph.shape(data_input(bn))
    if shape is None or len(shape) < 2:
        return batch, False
    leading = batch
    if isinstance(shape[0], int) and declared and shape[0] > declared and shape[0] % declared == 0:
        leading = batch * (shape[0] // declared)  # rows = batch × tokens after a reshape
    rest = shape[2:]
    known = prod(d for d in rest if isinstance(d, int) and d > 0)
    exact = all(isinstance(d, int) and d > 0 for d in rest)
    return leading * known, exact


def check(graph: ModelGraph, ctx: RuleContext) -> Iterator[Finding]:
    bns = _computes_batch_statistics(graph)
    if not bns:
        return
    batch, source = _batch(graph, ctx)
    min_batch = int(ctx.options["min-batch-size"])
    min_values = int(ctx.options["min-values-per-channel"])
    if batch is None:
        yield ctx.diagnostic(
            "BN904",
            None,
            f"BN002 needs the training batch size: the batch dimension is symbolic and "
            f"{len(bns)} BatchNorm layer(s) compute batch statistics; pass --train-batch-size "
            "or --input-shape",
            evidence={"batchnorms": len(bns)},
        )
        return
    declared, _ = _declared_batch(graph)
    undetermined = 0
    for bn in bns:
        values, exact = _values_per_channel(graph, bn, batch, declared)
        if exact and values <= 1:
            severity, problem = Severity.ERROR, "a single value per channel (zero variance)"
        elif batch < min_batch:
            severity, problem = None, f"batch {batch} below {min_batch}"
        elif values < min_values and exact:
            severity, problem = None, f"{values} values per channel, below {min_values}"
        else:
            undetermined += not exact and values < min_values
            continue
        shape = graph.shape(data_input(bn))
        yield ctx.finding(
            bn,
            f"{bn.source_op} {bn.display_name!r} computes batch statistics from "
            f"{'' if exact else 'at least '}{values} value(s) per channel (batch {batch} from "
            f"{source}): {problem}",
            severity=severity,
            evidence={
                "batch": batch,
                "batch_source": source,
                "values_per_channel": values,
                "exact": exact,
                "input_shape": list(shape) if shape is not None else None,
                "min_batch_size": min_batch,
                "min_values_per_channel": min_values,
            },
            fix="train with a larger per-device batch or SyncBatchNorm, freeze this BN, "
            "or use GroupNorm/LayerNorm",
        )
    if undetermined:
        yield ctx.diagnostic(
            "BN904",
            None,
            f"BN002 could not size {undetermined} BatchNorm input(s) with symbolic spatial "
            "dims; pass --input-shape",
            evidence={"batchnorms": undetermined},
        )
