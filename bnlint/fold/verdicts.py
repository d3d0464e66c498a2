"""Fold planning: can each BatchNormalization be folded away, into what, and if not, why.

The plan is the precondition half of folding. BN011 reports it; the fold pass
(``bnlint fold``) executes it. Every BN gets a verdict; nothing is skipped silently.

Backward folding (into the producer: Conv, ConvTranspose, Gemm, MatMul [+ Add]) is
preferred. Forward folding (into a following Conv) is exact only when that Conv has no
zero padding and groups == 1 (padding would turn the BN shift into a border artefact).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bnlint.bn_arrays import non_finite_terms
from bnlint.graph import ModelGraph, Node

FLOAT_DTYPES = frozenset({"float16", "float32", "float64", "bfloat16"})
BN_PARAM_ROLES = ("scale", "bias", "mean", "var")
# How a fold kind reads in messages and tables.
KIND_LABEL = {
    "conv": "Conv",
    "conv_transpose": "ConvTranspose",
    "gemm": "Gemm",
    "matmul": "MatMul",
    "matmul_add": "MatMul + Add",
    "forward_conv": "following Conv",
}


@dataclass(frozen=True)
class FoldVerdict:
    """The plan for one BN. ``reason_code`` is stable and machine-readable."""

    bn: Node
    foldable: bool
    kind: str | None = None  # conv | conv_transpose | gemm | matmul | matmul_add | forward_conv
    producer: Node | None = None  # the node whose weights absorb the BN
    add: Node | None = None  # the bias Add of a MatMul + Add pair
    reason_code: str | None = None
    reason: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    channels: int | None = None


@dataclass
class FoldRecord:
    """What happened to one BN of the original model, in a fold made by bnlint or audited.

    ``status``: ``folded`` (the BN is gone and ``target_index`` is the top-level node of the
    folded model that absorbed it), ``not-folded`` (still there, or left alone by bnlint,
    with ``reason_code``/``reason``), ``removed`` (gone although the plan says it cannot be
    folded exactly), or ``unmatched`` (gone, and no node of the folded model could be
    identified as its target). ``ref_tensors``/``new_tensors`` name the (input, output)
    tensors around the fold in the original and the folded model, for numeric comparison.
    Verification fills ``algebra``, ``numeric`` and, when the fold is wrong, ``problem``.
    """

    verdict: FoldVerdict
    status: str
    reason_code: str | None = None
    reason: str | None = None
    target_index: int | None = None
    add_index: int | None = None
    ref_tensors: tuple[str, str] | None = None
    new_tensors: tuple[str, str] | None = None
    matched_by: str | None = None
    target_name: str | None = None  # display name and op type of the absorbing node
    target_op: str | None = None
    algebra: Any = None
    numeric: Any = None
    problem: str | None = None

    @property
    def bn(self) -> Node:
        return self.verdict.bn


def plan(graph: ModelGraph) -> list[FoldVerdict]:
    """A verdict for every BN in graph order (cached on the graph)."""
    cached = graph.extras.get("fold_plan")
    if cached is None:
        cached = graph.extras["fold_plan"] = _with_finite_terms(
            graph, [verdict(graph, bn) for bn in graph.nodes_of("batch_norm")]
        )
    return cached


def _with_finite_terms(graph: ModelGraph, verdicts: list[FoldVerdict]) -> list[FoldVerdict]:
    """An exact fold of NaN or infinite statistics is still NaN: it would move the defect
    from the BN (where BN006 names it) into the producer's weights, so it is not made."""
    if not any(v.foldable for v in verdicts):
        return verdicts
    bad = non_finite_terms(graph)
    return [
        _fail(
            v.bn,
            "non-finite-statistics",
            "its statistics give a NaN or infinite scale or shift in some channel, see BN006",
        )
        if v.foldable and v.bn.id in bad
        else v
        for v in verdicts
    ]


def _fail(bn: Node, code: str, reason: str, **extra) -> FoldVerdict:
    return FoldVerdict(bn=bn, foldable=False, reason_code=code, reason=reason, **extra)


def bn_channels(graph: ModelGraph, bn: Node) -> int | None:
    for role in BN_PARAM_ROLES:
        shape = graph.shape(bn.input(role))
        if shape is not None and len(shape) == 1 and isinstance(shape[0], int):
            return shape[0]
    return None


def _bn_preconditions(graph: ModelGraph, bn: Node) -> FoldVerdict | None:
    if bn.attrs.get("training"):
        evidence = bn.attrs.get("training_evidence", "training mode")
        return _fail(bn, "training-mode", f"it runs in training mode ({evidence}), see BN003")
    if bn.attrs.get("spatial", 1) == 0:
        return _fail(bn, "per-activation", "spatial=0 normalises per activation, not per channel")
    if bn.attrs.get("track_running_stats") is False:
        return _fail(bn, "no-running-stats", "it has no running statistics, see BN004")
    for role in BN_PARAM_ROLES:
        name = bn.input(role)
        if name is None:
            return _fail(bn, "parameter-missing", f"its {role} input is missing")
        if not graph.is_constant(name):
            if name in graph.params:
                return _fail(
                    bn, "parameter-overridable", f"its {role} {name!r} is a graph input, see BN020"
                )
            return _fail(
                bn, "parameter-not-constant", f"its {role} {name!r} is computed at run time"
            )
    dtype = graph.dtype(bn.inputs[0]) or graph.dtype(bn.input("scale"))
    if dtype is not None and dtype not in FLOAT_DTYPES:
        return _fail(bn, "unsupported-dtype", f"its data type {dtype} is not floating point")
    return None


def verdict(graph: ModelGraph, bn: Node) -> FoldVerdict:
    failed = _bn_preconditions(graph, bn)
    if failed is not None:
        return failed
    channels = bn_channels(graph, bn)
    backward = _backward(graph, bn, channels)
    if backward.foldable or backward.reason_code not in _PRODUCER_REASONS:
        return backward
    forward = _forward(graph, bn)
    if isinstance(forward, FoldVerdict):
        return forward
    if forward is None:
        return backward
    return replace(
        backward, reason=f"{backward.reason}; {forward}", notes=(*backward.notes, forward)
    )


_PRODUCER_REASONS = {"no-producer", "producer-not-foldable", "producer-shared-output"}


def _producer_of(graph: ModelGraph, bn: Node) -> tuple[Node | None, Node | None, str | None]:
    """The weighted producer of ``bn`` and, for MatMul + Add, the Add in between."""
    producer = graph.producer(bn.inputs[0])
    if producer is None or producer.op != "add" or len(producer.inputs) != 2:
        return producer, None, None
    for index in (0, 1):
        upstream = graph.producer(producer.inputs[index])
        is_matmul = (
            upstream is not None and upstream.op == "linear" and upstream.attrs.get("matmul")
        )
        if is_matmul and graph.is_constant(producer.inputs[1 - index]):
            return upstream, producer, "matmul_add"
    return producer, None, None


def _single_consumer(graph: ModelGraph, tensor: str, expected: Node) -> str | None:
    consumers = graph.consumers(tensor)
    record = graph.tensors.get(tensor)
    if record is not None and record.is_graph_output:
        return f"its output {tensor!r} is also a graph output"
    others = [node for node in consumers if node.id != expected.id]
    if others:
        names = ", ".join(repr(node.display_name) for node in others[:3])
        return f"its output also feeds {len(others)} other node(s): {names}"
    return None


def _backward(graph: ModelGraph, bn: Node, channels: int | None) -> FoldVerdict:
    producer, add, kind = _producer_of(graph, bn)
    if producer is None:
        return _fail(
            bn, "no-producer", "its input comes straight from a graph input", channels=channels
        )
    if producer.op not in ("conv", "conv_transpose", "linear"):
        return _fail(
            bn,
            "producer-not-foldable",
            f"its producer {producer.display_name!r} ({producer.source_op}) has no weights "
            "to absorb it",
            producer=producer,
            channels=channels,
        )
    if kind is None:
        if producer.op == "linear":
            kind = "matmul" if producer.attrs.get("matmul") else "gemm"
        else:
            kind = producer.op
    chain = [(producer, add)] if add is not None else [(producer, bn)]
    if add is not None:
        chain.append((add, bn))
    for upstream, downstream in chain:
        shared = _single_consumer(graph, upstream.outputs[0], downstream)
        if shared is not None:
            return _fail(
                bn,
                "producer-shared-output",
                f"{upstream.display_name!r}: {shared}",
                producer=producer,
                channels=channels,
            )
    weight = producer.input("weight")
    for role in ("weight", "bias"):
        name = producer.input(role)
        if name is not None and not graph.is_constant(name):
            return _fail(
                bn,
                "producer-weight-not-constant",
                f"the {role} {name!r} of {producer.display_name!r} is not a constant",
                producer=producer,
                channels=channels,
            )
    mismatch = _channel_mismatch(graph, producer, kind, channels, bn)
    if mismatch is not None:
        return _fail(bn, "channel-mismatch", mismatch, producer=producer, channels=channels)
    notes = []
    sharers = _distinct_consumers(graph, weight) - 1
    if sharers > 0:
        notes.append(f"weight {weight!r} is shared with {sharers} other node(s); folding clones it")
    return FoldVerdict(
        bn=bn,
        foldable=True,
        kind=kind,
        producer=producer,
        add=add,
        notes=tuple(notes),
        channels=channels,
    )


def _distinct_consumers(graph: ModelGraph, tensor: str | None) -> int:
    """How many nodes read ``tensor``, memoised: thousands of convs may share one weight."""
    if tensor is None:
        return 0
    counts = graph.extras.setdefault("fold_consumer_counts", {})
    if tensor not in counts:
        record = graph.tensors.get(tensor)
        counts[tensor] = len(set(record.consumers)) if record is not None else 0
    return counts[tensor]


def output_channels(graph: ModelGraph, producer: Node, kind: str) -> int | None:
    """How many output channels the producer's weight defines (None if unknown)."""
    shape = graph.shape(producer.input("weight"))
    if shape is None or not all(isinstance(d, int) for d in shape) or len(shape) < 2:
        return None
    if kind == "conv":
        return shape[0]
    if kind == "conv_transpose":
        return shape[1] * int(producer.attrs.get("groups", 1))
    if kind == "gemm":
        return shape[0] if producer.attrs.get("transB") else shape[1]
    return shape[-1]  # MatMul: (in, out)


def _channel_mismatch(
    graph: ModelGraph, producer: Node, kind: str, channels: int | None, bn: Node
) -> str | None:
    # A linear layer feeding a rank > 2 BN is the BatchNorm1d-on-(N, L, C) bug: say so first,
    # since the channel counts then disagree only as a consequence.
    if kind in ("gemm", "matmul", "matmul_add"):
        shape = graph.shape(bn.inputs[0])
        if shape is not None and len(shape) > 2:
            return (
                f"the BN normalises axis 1 of a rank-{len(shape)} tensor while "
                f"{producer.display_name!r} produces features on the last axis, see BN009"
            )
    produced = output_channels(graph, producer, kind)
    if channels is not None and produced is not None and produced != channels:
        name = producer.display_name
        return f"{name!r} produces {produced} channels but the BN has {channels}, see BN010"
    return None


def _forward(graph: ModelGraph, bn: Node) -> FoldVerdict | str | None:
    """The forward fold into the single following Conv, or why it is not exact (a string)."""
    if not bn.outputs or not bn.outputs[0]:
        return None  # no output to follow (e.g. a graph recovered without its edges)
    consumers = graph.consumers(bn.outputs[0])
    if len(consumers) != 1 or consumers[0].op != "conv":
        return None
    conv = consumers[0]
    record = graph.tensors.get(bn.outputs[0])
    if record is not None and record.is_graph_output:
        return None
    pads = conv.attrs.get("pads") or []
    padded = any(int(p) != 0 for p in pads) or conv.attrs.get("auto_pad", "NOTSET") in (
        "SAME_UPPER",
        "SAME_LOWER",
    )
    name = conv.display_name
    if padded:
        return f"folding forward into {name!r} would not be exact: it pads its input"
    if int(conv.attrs.get("groups", 1)) != 1:
        return f"folding forward into {name!r} is not supported: it is grouped"
    bias = conv.input("bias")
    if not graph.is_constant(conv.input("weight")) or (
        bias is not None and not graph.is_constant(bias)
    ):
        return f"folding forward into {name!r} is impossible: its weights are not constant"
    return FoldVerdict(
        bn=bn,
        foldable=True,
        kind="forward_conv",
        producer=conv,
        notes=("folded forward into the following Conv (no padding, groups=1)",),
        channels=bn_channels(graph, bn),
    )
