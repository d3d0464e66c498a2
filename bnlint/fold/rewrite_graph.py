"""Graph bookkeeping for the ONNX rewrite: what stays live, what is dropped, how values
broadcast onto a channel axis. Pure helpers of :mod:`bnlint.fold.rewrite`.
"""

from __future__ import annotations

import numpy as np
from onnx import GraphProto, NodeProto

from bnlint.fold.affine import BNAffine
from bnlint.graph import ModelGraph, Node
from bnlint.onnx.model_io import names_read


def live(nodes: list[NodeProto], body: GraphProto) -> set[int]:
    read = names_read(nodes) | {o.name for o in body.output}
    return {id(node) for node in nodes if any(name in read for name in node.output if name)}


def without_dead(nodes: list[NodeProto], live_before: set[int], body: GraphProto) -> list:
    """Drop what fed only removed nodes (e.g. a zero-bias plumbing chain)."""
    while True:
        read = names_read(nodes) | {o.name for o in body.output}
        dead = {
            id(node)
            for node in nodes
            if id(node) in live_before and not any(o in read for o in node.output if o)
        }
        if not dead:
            return nodes
        nodes = [node for node in nodes if id(node) not in dead]


def drop_unread(graph: GraphProto, renamed: dict[str, str]) -> None:
    """Initializers nothing reads any more, their input declarations and recorded types."""
    read = names_read(graph.node) | {o.name for o in graph.output}
    unused = {t.name for t in graph.initializer} - read
    if unused:
        _delete(graph.initializer, [t.name in unused for t in graph.initializer])
        inputs = [v for v in graph.input if v.name not in unused]
        del graph.input[:]
        graph.input.extend(inputs)
    gone = {name for name in renamed if name not in read} | unused
    if gone:
        values = [v for v in graph.value_info if v.name not in gone]
        del graph.value_info[:]
        graph.value_info.extend(values)


def _delete(field, drop: list[bool]) -> None:
    """Remove the marked entries of a repeated message field where they are (a rebuild
    would copy every kept tensor: 100 MB for ResNet-50), unless there are so many that
    the moves cost more."""
    indices = [index for index, gone in enumerate(drop) if gone]
    if len(indices) * len(drop) <= 50_000_000:
        for index in reversed(indices):
            del field[index]
        return
    kept = [entry for entry, gone in zip(field, drop, strict=True) if not gone]
    del field[:]
    field.extend(kept)


def all_names(graph: GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer} | {v.name for v in graph.input}
    for node in graph.node:
        names.update(node.output)
        for attribute in node.attribute:
            for body in [attribute.g] if attribute.HasField("g") else attribute.graphs:
                names |= all_names(body)
    return names


def rank(graph: ModelGraph, producer: Node) -> int:
    shape = graph.shape(producer.outputs[0]) or graph.shape(producer.input("weight"))
    return len(shape) if shape else 4


def along(affine: BNAffine, axis: str, rank: int | None) -> tuple[np.ndarray, np.ndarray]:
    """mult and shift shaped to broadcast on the channel axis (1 of ``rank``) or the last."""
    if axis == "last":
        return affine.mult, affine.shift
    shape = (-1,) + (1,) * ((rank or 4) - 2)
    return affine.mult.reshape(shape), affine.shift.reshape(shape)


def scaled(bias: np.ndarray, mult: np.ndarray, axis: str) -> np.ndarray:
    if axis == "last" or bias.ndim <= 1:
        return bias * mult
    return bias * mult.reshape((-1,) + (1,) * (bias.ndim - 1))


def overflow(values: np.ndarray, dtype: str) -> float | None:
    """The largest finite value of ``values`` that the cast to ``dtype`` turns infinite."""
    if dtype not in ("float16", "bfloat16", "float32"):
        return None
    largest = {"float16": 65504.0, "bfloat16": 3.3895314e38, "float32": 3.4028235e38}[dtype]
    values = np.asarray(values)
    if values.size == 0:
        return None
    low, high = float(values.min()), float(values.max())  # two passes, no copies
    if np.isfinite(low) and np.isfinite(high) and max(-low, high) <= largest:
        return None
    finite = values[np.isfinite(values)]
    over = finite[np.abs(finite) > largest]
    return float(np.abs(over).max()) if over.size else None
