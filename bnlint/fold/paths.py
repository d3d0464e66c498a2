"""Where a BN can go: the path from a BatchNormalization to the weights that absorb it.

Backward (into the producer) the path may pass through a constant bias ``Add`` (what
Paddle and a bias-free MatMul export), a ``Transpose`` that brings a MatMul's features to
axis 1 (``(N, L, C) -> (N, C, L)``, the BatchNorm1d layout), or another BatchNorm that
itself folds backward (``Conv -> BN -> BN``: both compose into the Conv). Forward (into
the single following Conv) is exact when that Conv pads nothing, whatever its groups.
Every property the fold relies on is proven from the graph (constness, rank, padding)
or the BN is refused with the property that is missing.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import pairwise

import numpy as np

from bnlint.fold.exact_ops import conv_pads
from bnlint.graph import ModelGraph, Node

WEIGHTED = ("conv", "conv_transpose", "linear")
PRODUCER_REASONS = frozenset({"no-producer", "producer-not-foldable", "producer-shared-output"})


def sole_reader(graph: ModelGraph, tensor: str, expected: Node) -> str | None:
    """Why ``expected`` is not the only reader of ``tensor`` (None when it is)."""
    record = graph.tensors.get(tensor)
    if record is not None and record.is_graph_output:
        return f"its output {tensor!r} is also a graph output"
    others = [node for node in graph.consumers(tensor) if node.id != expected.id]
    if others:
        names = ", ".join(repr(node.display_name) for node in others[:3])
        return f"its output also feeds {len(others)} other node(s): {names}"
    return None


def _through(graph: ModelGraph, bn: Node) -> tuple[Node | None, Node | None, Node | None]:
    """(producer, bias Add, Transpose) between the weighted producer and ``bn``."""
    source = graph.producer(bn.inputs[0])
    transpose = None
    if source is not None and source.op == "transpose":
        perm = source.attrs.get("perm")
        if perm and len(perm) >= 2 and int(perm[1]) == len(perm) - 1:
            transpose, source = source, graph.producer(source.inputs[0])
    add = None
    if source is not None and source.op == "add" and len(source.inputs) == 2:
        for index in (0, 1):
            upstream = graph.producer(source.inputs[index])
            if (
                upstream is not None
                and upstream.op in WEIGHTED
                and graph.is_constant(source.inputs[1 - index])
            ):
                add, source = source, upstream
                break
    if transpose is not None and not (
        source is not None and source.op == "linear" and source.attrs.get("matmul")
    ):
        return graph.producer(bn.inputs[0]), None, None  # a Transpose feeds only MatMul folds
    return source, add, transpose


def _kind(producer: Node, add: Node | None, transpose: Node | None) -> str:
    if producer.op == "linear":
        if not producer.attrs.get("matmul"):
            return "gemm"
        if transpose is not None:
            return "matmul_transpose"
        return "matmul_add" if add is not None else "matmul"
    return producer.op


def _rank(graph: ModelGraph, tensor: str) -> int | None:
    shape = graph.shape(tensor)
    return None if shape is None else len(shape)


def _constant_fits(graph: ModelGraph, add: Node, kind: str, rank: int | None) -> str | None:
    """Why the Add's constant is not a per-channel (or scalar) bias."""
    name = next(n for n in add.inputs if graph.is_constant(n))
    shape = graph.shape(name)
    if shape is None:
        return f"the shape of its bias {name!r} is unknown"
    if kind.startswith("matmul") or kind == "gemm":
        other = list(shape[:-1])
    else:
        if rank is None or len(shape) > rank:
            return f"the bias {name!r} of shape {tuple(shape)} is not per channel"
        padded = [1] * (rank - len(shape)) + list(shape)
        other = [d for axis, d in enumerate(padded) if axis != 1]
    if any(d != 1 for d in other):
        return f"the bias {name!r} of shape {tuple(shape)} is not one value per channel"
    return None


def backward_path(graph: ModelGraph, bn: Node, verdicts: dict) -> dict:
    """The producer path of ``bn`` as FoldVerdict fields, or {"fail": (code, reason, extra)}."""
    source = graph.producer(bn.inputs[0])
    if source is not None and source.op == "batch_norm":
        upstream = verdicts.get(source.id)
        shared = sole_reader(graph, source.outputs[0], bn)
        folds = upstream is not None and upstream.foldable and upstream.kind != "forward_conv"
        if folds and shared is None:
            note = f"composed with {source.display_name!r}, which folds into the same node"
            return {
                "verdict": replace(upstream, bn=bn, after=source, notes=(*upstream.notes, note))
            }
        reason = f"its producer {source.display_name!r} is a BatchNormalization that does not fold"
        return {"fail": ("producer-not-foldable", reason, {"producer": source})}
    producer, add, transpose = _through(graph, bn)
    if producer is None:
        return {"fail": ("no-producer", "its input comes straight from a graph input", {})}
    if producer.op not in WEIGHTED:
        reason = (
            f"its producer {producer.display_name!r} ({producer.source_op}) has no weights "
            "to absorb it"
        )
        return {"fail": ("producer-not-foldable", reason, {"producer": producer})}
    if producer.subgraph != bn.subgraph:
        reason = f"its producer {producer.display_name!r} is outside the BN's If/Loop body"
        return {"fail": ("crosses-scope", reason, {"producer": producer})}
    kind = _kind(producer, add, transpose)
    chain = [n for n in (producer, add, transpose) if n is not None] + [bn]
    for upstream, downstream in pairwise(chain):
        shared = sole_reader(graph, upstream.outputs[0], downstream)
        if shared is not None:
            reason = f"{upstream.display_name!r}: {shared}"
            return {"fail": ("producer-shared-output", reason, {"producer": producer})}
    return {"kind": kind, "producer": producer, "add": add, "via": transpose}


def linear_problem(graph: ModelGraph, bn: Node, kind: str, producer: Node, via) -> tuple | None:
    """(code, reason) when a Gemm/MatMul fold would rest on an unproven layout."""
    weight_shape = graph.shape(producer.input("weight"))
    if kind.startswith("matmul") and (weight_shape is None or len(weight_shape) != 2):
        rank = "unknown" if weight_shape is None else f"{len(weight_shape)}-D"
        return (
            "weight-not-matrix",
            f"the weight of {producer.display_name!r} is {rank}, not a matrix: its features "
            "are not on an axis a BN scale could follow",
        )
    if kind == "matmul_transpose":
        perm = [int(p) for p in via.attrs.get("perm")]
        if perm[0] != 0:
            return ("rank-unknown", f"the Transpose {via.display_name!r} moves the batch axis")
        return None
    if kind.startswith("matmul"):
        rank = _rank(graph, bn.inputs[0])
        if rank is None:
            return (
                "rank-unknown",
                "the rank of the BN input is only known at run time; a MatMul's features "
                "are on the BN's axis 1 only for 2-D tensors",
            )
        if rank > 2:
            return (
                "channel-mismatch",
                f"the BN normalises axis 1 of a rank-{rank} tensor while "
                f"{producer.display_name!r} produces features on the last axis, see BN009",
            )
    return None


def forward_path(graph: ModelGraph, bn: Node) -> Node | str | None:
    """The Conv the BN folds forward into, why not (a string), or None (no candidate)."""
    if not bn.outputs or not bn.outputs[0]:
        return None
    consumers = graph.consumers(bn.outputs[0])
    if len(consumers) != 1 or consumers[0].op != "conv":
        return None
    conv = consumers[0]
    record = graph.tensors.get(bn.outputs[0])
    if record is not None and record.is_graph_output:
        return None
    name = conv.display_name
    if conv.subgraph != bn.subgraph:
        return f"folding forward into {name!r} would cross an If/Loop body"
    padding = _pads(graph, conv)
    if padding is not None:
        return f"folding forward into {name!r} would not be exact: {padding}"
    bias = conv.input("bias")
    if not graph.is_constant(conv.input("weight")) or (
        bias is not None and not graph.is_constant(bias)
    ):
        return f"folding forward into {name!r} is impossible: its weights are not constant"
    return conv


def _pads(graph: ModelGraph, conv: Node) -> str | None:
    """Why the Conv may pad its input (None when it provably pads nothing)."""
    auto_pad = conv.attrs.get("auto_pad", "NOTSET")
    if isinstance(auto_pad, bytes):
        auto_pad = auto_pad.decode()
    if auto_pad == "VALID":
        return None
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        shape = graph.shape(conv.inputs[0])
        weight = graph.shape(conv.input("weight"))
        spatial = None if shape is None else shape[2:]
        if spatial is None or weight is None or not all(isinstance(d, int) for d in spatial):
            return "its SAME padding depends on an input size that is not known statically"
        attrs = {key: conv.attrs.get(key) for key in ("strides", "dilations")}
        attrs["auto_pad"] = auto_pad
        _, _, pads = conv_pads(attrs, list(spatial), list(weight[2:]))
        return "it pads its input" if any(pads) else None
    pads = conv.attrs.get("pads") or []
    return "it pads its input" if any(int(p) != 0 for p in pads) else None


def forward_channels(graph: ModelGraph, conv: Node) -> int | None:
    shape = graph.shape(conv.input("weight"))
    if shape is None or len(shape) < 2 or not isinstance(shape[1], int):
        return None
    return int(shape[1]) * int(conv.attrs.get("groups", 1) or 1)


def constant_problem(graph: ModelGraph, add, kind: str, producer: Node) -> str | None:
    if add is None:
        return None
    rank = _rank(graph, producer.outputs[0]) or (
        len(graph.shape(producer.input("weight")) or ()) or None
    )
    return _constant_fits(graph, add, kind, rank)


__all__ = ["PRODUCER_REASONS", "backward_path", "forward_path", "np"]
