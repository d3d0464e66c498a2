"""Numeric verification per fold, locally: for graphs too large to run whole.

ONNX Runtime's session creation grows faster than linearly with the number of nodes (a
9,000-node chain takes 0.7 s, 36,000 nodes tens of seconds), and in a deep chain a
whole-model run also accumulates the rounding of thousands of folds into every BN's
input, so that a fold's own error can no longer be told from upstream error. Above
:data:`LOCAL_NODES` nodes, each fold is therefore verified on its own: the original
producer (+ Add) and BatchNormalization, and the folded node(s), run side by side on the
same seeded input in small models. Convolutions with the same shape and attributes are
stacked into one grouped Conv (K folds become ``group = K * g``: each group sees only its
own channels, so every fold is still computed separately), so a 12,000-fold chain needs
one session; other kinds are batched side by side, at most :data:`CHUNK_NODES` nodes per
session. No end-to-end comparison of the model's outputs is made then, and
``Verification.numeric_scope`` says so (``per-fold``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from bnlint.fold.results import (
    LOCAL_NODES,
    NumericResult,
    Verification,
    numeric_tolerance,
    tensor_error,
)
from bnlint.fold.verdicts import FoldRecord
from bnlint.graph import ModelGraph, Node

__all__ = ["LOCAL_NODES", "verify_per_fold"]
CHUNK_NODES = 1024  # nodes per session for folds that cannot be stacked
MAX_STACK = 1024  # folds per stacked Conv
BATCH = 2


@dataclass
class _Side:
    """One side of a fold (original or folded) as a chain of node protos on one input."""

    graph: ModelGraph
    protos: list[Any]
    data: str  # the chain's data input, as named in its model


@dataclass
class _Fold:
    index: int
    record: FoldRecord
    reference: _Side
    folded: _Side
    shape: tuple[int, ...]
    dtype: str
    stack_key: tuple | None = None
    params: dict[str, list[np.ndarray]] = field(default_factory=dict)


def verify_per_fold(
    result: Verification,
    original: ModelGraph,
    folded: ModelGraph,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> None:
    """Fill ``record.numeric`` of every folded record, each fold run on its own."""
    from bnlint.runtime_onnx import _onnxruntime

    _onnxruntime()  # RunnerUnavailable without the ort extra: the caller reports it
    top_level = {
        node.location.node_index: node
        for node in folded.nodes
        if node.subgraph is None and node.location is not None
    }
    folds = []
    for index, record in enumerate(result.records):
        if record.status == "folded" and record.target_index in top_level:
            fold = _describe(index, record, original, folded, top_level)
            if fold is not None:
                folds.append(fold)
    rng = np.random.default_rng(seed)
    stacks: dict[tuple, list[_Fold]] = {}
    singles: list[_Fold] = []
    for fold in folds:
        (stacks.setdefault(fold.stack_key, []) if fold.stack_key else singles).append(fold)
    for members in stacks.values():
        for start in range(0, len(members), MAX_STACK):
            _run_stack(result, members[start : start + MAX_STACK], rng)
    chunk: list[_Fold] = []
    for fold in singles:
        chunk.append(fold)
        if sum(len(f.reference.protos) + len(f.folded.protos) for f in chunk) >= CHUNK_NODES:
            _run_side_by_side(result, chunk, rng)
            chunk = []
    if chunk:
        _run_side_by_side(result, chunk, rng)
    result.numeric_ran = True
    result.numeric_scope = "per-fold"


def _model_node(graph: ModelGraph, node: Node) -> Any:
    return graph.extras["onnx_model"].graph.node[node.location.node_index]


def _describe(
    index: int,
    record: FoldRecord,
    original: ModelGraph,
    folded: ModelGraph,
    top_level: dict[int, Node],
) -> _Fold | None:
    verdict = record.verdict
    kind, producer, bn = verdict.kind or "conv", verdict.producer, verdict.bn
    if producer is None or producer.location is None or bn.location is None:
        return None
    chain = [producer, bn] if kind != "matmul_add" else [producer, verdict.add, bn]
    if kind == "forward_conv":
        chain = [bn, producer]
    if any(node is None or node.location is None for node in chain):
        return None
    target = top_level[record.target_index]
    new_chain = [target]
    if record.add_index is not None and record.add_index in top_level:
        new_chain.append(top_level[record.add_index])
    weight = original.param(producer.input("weight"))
    if weight is None or weight.ndim < 2:
        return None
    shape = _input_shape(kind, producer, np.shape(weight))
    if shape is None:
        return None
    dtype = original.dtype(producer.input("weight")) or "float32"
    reference = _Side(original, [_model_node(original, n) for n in chain], chain[0].inputs[0])
    new = _Side(folded, [_model_node(folded, n) for n in new_chain], target.inputs[0])
    fold = _Fold(index, record, reference, new, shape, dtype)
    if kind == "conv" and len(new_chain) == 1 and target.op == "conv":
        fold.stack_key = _stack_key(fold, producer, bn, target, np.shape(weight))
    return fold


def _input_shape(kind: str, producer: Node, weight_shape: tuple[int, ...]) -> tuple | None:
    """A small input that reaches every weight: kernel extent + stride per spatial dim."""
    attrs = producer.attrs
    groups = int(attrs.get("groups", 1) or 1)
    if kind in ("gemm", "matmul", "matmul_add"):
        if len(weight_shape) != 2:
            return None
        if kind == "gemm":
            k = weight_shape[1] if attrs.get("transB") else weight_shape[0]
            return (k, BATCH) if attrs.get("transA") else (BATCH, k)
        return (BATCH, weight_shape[0])
    kernel = weight_shape[2:]
    strides = attrs.get("strides") or [1] * len(kernel)
    dilations = attrs.get("dilations") or [1] * len(kernel)
    spatial = tuple(
        max(4, (k - 1) * d + 1 + s) for k, d, s in zip(kernel, dilations, strides, strict=False)
    )
    if kind == "conv_transpose":
        return (BATCH, weight_shape[0], *spatial)
    return (BATCH, weight_shape[1] * groups, *spatial)


def _attributes(proto: Any) -> tuple:
    return tuple(sorted((a.name, a.SerializeToString()) for a in proto.attribute))


def _stack_key(fold: _Fold, producer: Node, bn: Node, target: Node, weight_shape) -> tuple:
    conv, norm = fold.reference.protos
    return (
        _attributes(conv),
        _attributes(norm),
        _attributes(fold.folded.protos[0]),
        tuple(weight_shape),
        fold.shape,
        fold.dtype,
        producer.input("bias") is not None,
        target.input("bias") is not None,
    )


def _param(side: _Side, name: str) -> np.ndarray:
    value = side.graph.param(name)
    if value is None:
        raise ValueError(f"{name!r} is not a constant")
    return np.asarray(value)


def _copy_chain(side: _Side, prefix: str, x: str, inits: dict[str, np.ndarray]) -> tuple:
    """The side's nodes renamed under ``prefix``, reading ``x``; returns (nodes, output)."""
    from onnx import NodeProto

    rename = {side.data: x}
    nodes = []
    for position, proto in enumerate(side.protos):
        node = NodeProto()
        node.CopyFrom(proto)
        del node.input[:], node.output[:], node.metadata_props[:]
        for name in proto.input:
            if not name:
                node.input.append("")
            elif name in rename:
                node.input.append(rename[name])
            else:
                local = f"{prefix}p{len(inits)}"
                inits[local] = _param(side, name)
                node.input.append(local)
        rename[proto.output[0]] = f"{prefix}o{position}"
        node.output.append(rename[proto.output[0]])
        node.name = f"{prefix}n{position}"
        nodes.append(node)
    return nodes, nodes[-1].output[0]


def _run(nodes, inits, feeds, outputs, opset_model) -> list[np.ndarray]:
    from onnx import ValueInfoProto, helper

    from bnlint.onnx_io import to_tensor
    from bnlint.runtime_onnx import OnnxRunner

    inputs = [
        helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(value.dtype), None)
        for name, value in feeds.items()
    ]
    graph = helper.make_graph(
        nodes,
        "bnlint_local_folds",
        inputs,
        [ValueInfoProto(name=name) for name in outputs],
        [to_tensor(value, value.dtype.name, name) for name, value in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=list(opset_model.opset_import))
    model.ir_version = opset_model.ir_version
    return OnnxRunner(model).run(feeds)


def _record(result: Verification, fold: _Fold, reference: np.ndarray, new: np.ndarray) -> None:
    record = fold.record
    name = record.ref_tensors[1] if record.ref_tensors else record.bn.outputs[0]
    error = tensor_error(name, reference, new)
    tolerance = numeric_tolerance(error.dtype, result.tolerance_scale)
    ok = error.rel <= tolerance
    problem = record.problem
    if not ok and problem is None:
        problem = (
            f"run on its own, the folded node's output differs by {error.max_abs:.3g} "
            f"({error.rel:.3g} of its magnitude {error.max_ref:.3g}; tolerance "
            f"{tolerance:.2g}) from producer + BN on the same input: the fold loses precision"
        )
    result.records[fold.index] = replace(
        record, numeric=NumericResult(ok, None, error, tolerance), problem=problem
    )


def _random(rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    from bnlint.runtime_onnx import random_array

    return random_array(rng, shape, dtype)


def _run_stack(result: Verification, members: list[_Fold], rng: np.random.Generator) -> None:
    """K identical convolutions as one grouped Conv (and one BN) per side."""
    from onnx import helper

    first = members[0]
    count = len(members)
    shape = (first.shape[0], first.shape[1] * count, *first.shape[2:])
    feeds = {"x": _random(rng, shape, first.dtype)}
    inits: dict[str, np.ndarray] = {}
    nodes, outputs = [], []
    for side_name in ("reference", "folded"):
        sides = [getattr(fold, side_name) for fold in members]
        chain = sides[0].protos
        previous = "x"
        for position, proto in enumerate(chain):
            node = helper.make_node(proto.op_type, [], [f"{side_name}{position}"])
            node.domain = proto.domain
            node.attribute.extend(a for a in proto.attribute if a.name != "group")
            if proto.op_type == "Conv":
                groups = next((a.i for a in proto.attribute if a.name == "group"), 1)
                node.attribute.append(helper.make_attribute("group", groups * count))
            node.input.append(previous)
            for slot in range(1, len(proto.input)):
                name = f"{side_name}{position}_{slot}"
                if not proto.input[slot]:
                    node.input.append("")
                    continue
                inits[name] = np.concatenate(
                    [_param(side, side.protos[position].input[slot]) for side in sides]
                )
                node.input.append(name)
            nodes.append(node)
            previous = node.output[0]
        outputs.append(previous)
    reference, new = _run(nodes, inits, feeds, outputs, first.reference.graph.extras["onnx_model"])
    channels = reference.shape[1] // count
    for k, fold in enumerate(members):
        part = slice(k * channels, (k + 1) * channels)
        _record(result, fold, reference[:, part], new[:, part])


def _run_side_by_side(result: Verification, folds: list[_Fold], rng) -> None:
    """Folds that cannot be stacked, each on its own input, in one model."""
    inits: dict[str, np.ndarray] = {}
    feeds, nodes, outputs = {}, [], []
    for number, fold in enumerate(folds):
        x = f"x{number}"
        feeds[x] = _random(rng, fold.shape, fold.dtype)
        for tag, side in (("r", fold.reference), ("f", fold.folded)):
            chain, out = _copy_chain(side, f"{tag}{number}_", x, inits)
            nodes += chain
            outputs.append(out)
    values = _run(nodes, inits, feeds, outputs, folds[0].reference.graph.extras["onnx_model"])
    for number, fold in enumerate(folds):
        _record(result, fold, values[2 * number], values[2 * number + 1])
