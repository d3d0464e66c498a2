"""Fold planning: can each BatchNormalization be folded away, into what, and if not, why.

The plan is the precondition half of folding. BN011 reports it; the fold pass
(``bnlint fold``) executes it. Every BN gets a verdict; nothing is skipped silently.

Backward folding (into the producer: Conv, ConvTranspose, Gemm, MatMul, through a bias
Add, a feature Transpose or another folding BN; see :mod:`bnlint.fold.paths`) is
preferred. Forward folding (into a following Conv) is exact only when that Conv pads
nothing (padding would turn the BN shift into a border artefact).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from bnlint.analysis.bn_arrays import non_finite_terms
from bnlint.fold.paths import (
    PRODUCER_REASONS,
    backward_path,
    constant_problem,
    forward_channels,
    forward_path,
    linear_problem,
)
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
    "matmul_transpose": "MatMul (through a Transpose)",
    "forward_conv": "following Conv",
}


@dataclass(frozen=True)
class FoldVerdict:
    """The plan for one BN. ``reason_code`` is stable and machine-readable."""

    bn: Node
    foldable: bool
    kind: str | None = None  # a key of KIND_LABEL
    producer: Node | None = None  # the node whose weights absorb the BN
    add: Node | None = None  # a constant bias Add between the producer and the BN
    via: Node | None = None  # the Transpose of a MatMul -> Transpose -> BN fold
    after: Node | None = None  # the BN this one composes with (Conv -> BN -> BN)
    reason_code: str | None = None
    reason: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    channels: int | None = None


@dataclass
class FoldRecord:
    """What happened to one BN of the original model, in a fold made by bnlint or audited.

    ``status``: ``folded`` (the BN is gone and its region computes the same function in
    the folded model), ``not-folded`` (still there, or left alone by bnlint, with
    ``reason_code``/``reason``), ``removed`` (gone although the plan says no exact fold
    exists), or ``unmatched`` (gone, and its region could not be delimited or evaluated in
    the folded model; ``reason`` says why). Verification fills ``algebraic`` and
    ``numeric`` (:class:`bnlint.fold.bounds.Check`) and, when the fold is wrong,
    ``problem`` and ``problem_code``.
    """

    verdict: FoldVerdict
    status: str
    reason_code: str | None = None
    reason: str | None = None
    matched_by: str | None = None
    target_name: str | None = None  # display name and op type of the absorbing node(s)
    target_op: str | None = None
    algebraic: Any = None
    numeric: Any = None
    problem: str | None = None
    problem_code: str | None = None
    region: Any = None  # the bnlint.fold.regional.RegionResult that holds the BN

    @property
    def bn(self) -> Node:
        return self.verdict.bn


def plan(graph: ModelGraph) -> list[FoldVerdict]:
    """A verdict for every BN in graph order (cached on the graph)."""
    cached = graph.cache.fold_plan
    if cached is None:
        verdicts: dict[int, FoldVerdict] = {}
        for bn in graph.nodes_of("batch_norm"):
            verdicts[bn.id] = verdict(graph, bn, verdicts)
        cached = graph.cache.fold_plan = _with_finite_terms(graph, list(verdicts.values()))
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


def verdict(graph: ModelGraph, bn: Node, verdicts: dict[int, FoldVerdict]) -> FoldVerdict:
    failed = _bn_preconditions(graph, bn)
    if failed is not None:
        return failed
    channels = bn_channels(graph, bn)
    backward = _backward(graph, bn, channels, verdicts)
    if backward.foldable or backward.reason_code not in PRODUCER_REASONS:
        return backward
    forward = forward_path(graph, bn)
    if isinstance(forward, Node):
        produced = forward_channels(graph, forward)
        if channels is not None and produced is not None and produced != channels:
            reason = f"{forward.display_name!r} reads {produced} channels but the BN has {channels}"
            return replace(backward, reason=f"{backward.reason}; {reason}")
        return FoldVerdict(
            bn=bn,
            foldable=True,
            kind="forward_conv",
            producer=forward,
            notes=("folded forward into the following Conv (it pads nothing)",),
            channels=channels,
        )
    if forward is None:
        return backward
    return replace(
        backward, reason=f"{backward.reason}; {forward}", notes=(*backward.notes, forward)
    )


def _backward(
    graph: ModelGraph, bn: Node, channels: int | None, verdicts: dict[int, FoldVerdict]
) -> FoldVerdict:
    path = backward_path(graph, bn, verdicts)
    if "verdict" in path:
        return replace(path["verdict"], channels=channels)
    if "fail" in path:
        code, reason, extra = path["fail"]
        return _fail(bn, code, reason, channels=channels, **extra)
    kind, producer, add, via = path["kind"], path["producer"], path["add"], path["via"]
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
    problem = linear_problem(graph, bn, kind, producer, via) if producer.op == "linear" else None
    if problem is not None:
        return _fail(bn, problem[0], problem[1], producer=producer, channels=channels)
    bias_problem = constant_problem(graph, add, kind, producer)
    if bias_problem is not None:
        return _fail(bn, "bias-not-per-channel", bias_problem, producer=producer, channels=channels)
    mismatch = _channel_mismatch(graph, producer, kind, channels)
    if mismatch is not None:
        return _fail(bn, "channel-mismatch", mismatch, producer=producer, channels=channels)
    notes = []
    weight = producer.input("weight")
    sharers = _distinct_consumers(graph, weight) - 1
    if sharers > 0:
        notes.append(f"weight {weight!r} is shared with {sharers} other node(s); folding clones it")
    return FoldVerdict(
        bn=bn,
        foldable=True,
        kind=kind,
        producer=producer,
        add=add,
        via=via,
        notes=tuple(notes),
        channels=channels,
    )


def _distinct_consumers(graph: ModelGraph, tensor: str | None) -> int:
    """How many nodes read ``tensor``, memoised: thousands of convs may share one weight."""
    if tensor is None:
        return 0
    counts = graph.cache.fold_consumer_counts
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
    graph: ModelGraph, producer: Node, kind: str, channels: int | None
) -> str | None:
    produced = output_channels(graph, producer, kind)
    if channels is not None and produced is not None and produced != channels:
        name = producer.display_name
        return f"{name!r} produces {produced} channels but the BN has {channels}, see BN010"
    return None
