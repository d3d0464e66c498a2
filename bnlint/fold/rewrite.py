"""Execute the fold plan on an ONNX ModelProto: BN nodes disappear into their neighbours.

The rewrite works on a copy (external data inlined through the validated resolver) and
never mutates a tensor another node still reads: a weight that is shared, a graph input or
produced by constant plumbing is written under a new name; a weight only the folded
producer reads is replaced under its own name. Tensor names downstream of each BN are
kept (the producer takes over the BN's output name), so consumers, graph outputs and the
numeric comparison of original against folded model line up by name.

Arithmetic is float64 (``bnlint.fold.affine``); results are rounded once into the model's
dtype. Constant plumbing and initializers that only fed removed nodes are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
from onnx import ModelProto, NodeProto, helper

from bnlint.bn_arrays import affine_terms
from bnlint.fold.affine import BNAffine, fold_bias, fold_weight, forward_fold
from bnlint.fold.verdicts import FoldRecord, FoldVerdict, plan
from bnlint.graph import ModelGraph, Node
from bnlint.onnx_io import materialize, names_read, to_tensor


def fold_model(
    model: ModelProto, graph: ModelGraph, keep: Iterable[str] = ()
) -> tuple[ModelProto, list[FoldRecord], frozenset[str]]:
    """The folded copy of ``model``, one record per BN (graph order) and the names of the
    initializers the fold wrote (every other initializer is the original's, unchanged).

    ``graph`` is the ModelGraph loaded from ``model``. ``keep`` holds regular expressions:
    a BN whose node name or module path matches one is left in place.
    """
    patterns = [re.compile(pattern) for pattern in keep]
    rewriter = _Rewriter(materialize(model, graph), graph)
    records = []
    for verdict in plan(graph):
        names = [n for n in (verdict.bn.name, verdict.bn.scope) if n]
        if verdict.foldable and any(p.search(n) for p in patterns for n in names):
            records.append(_not_folded(verdict, "kept", "left in place by --keep"))
        else:
            records.append(rewriter.apply(verdict))
    return rewriter.finish(records), records, frozenset(rewriter.written)


_LINEAR_WITH_ADD = ("matmul", "matmul_add")  # the bias lives in an Add (new for bare MatMul)


def _not_folded(verdict: FoldVerdict, code: str | None = None, reason: str | None = None):
    return FoldRecord(
        verdict=verdict,
        status="not-folded",
        reason_code=code or verdict.reason_code,
        reason=reason or verdict.reason,
    )


class _Rewriter:
    def __init__(self, model: ModelProto, graph: ModelGraph) -> None:
        self.model = model
        self.graph = graph
        self.nodes: list[NodeProto | None] = list(model.graph.node)
        self.initializers = {t.name: i for i, t in enumerate(model.graph.initializer)}
        self.declared_inputs = {value.name for value in model.graph.input}
        # Every tensor name in use (the graph's table also holds each node's outputs).
        self.names = set(self.initializers) | self.declared_inputs | set(graph.tensors)
        self.targets: set[int] = set()
        self.written: set[str] = set()  # initializers given new values
        self.dropped_values: set[str] = set()
        self.live_before = self._live_nodes()
        # Every complete BN's (mult, shift), computed for all BNs at once.
        self.affines = affine_terms(graph)

    # -- one BN -----------------------------------------------------------------------------
    def apply(self, verdict: FoldVerdict) -> FoldRecord:
        if not verdict.foldable:
            return _not_folded(verdict)
        bn, producer = verdict.bn, verdict.producer
        if bn.subgraph is not None or producer is None or producer.subgraph is not None:
            return _not_folded(
                verdict, "in-subgraph", "it sits inside an If/Loop/Scan body (not rewritten)"
            )
        if producer.id in self.targets:
            return _not_folded(
                verdict,
                "target-absorbs-another-bn",
                f"{producer.display_name!r} already absorbs another BN in this fold",
            )
        terms = self.affines.get(bn.id)
        if terms is not None:
            affine = BNAffine(mult=terms[0], shift=terms[1])
        else:
            roles = ("scale", "bias", "mean", "var")
            params = [self.graph.param(bn.input(role)) for role in roles]
            affine = BNAffine.from_params(*params, eps=float(bn.attrs.get("eps", 1e-5)))
        dtype = self._dtype(bn, producer)
        fold = {
            "conv": self._conv,
            "conv_transpose": self._conv,
            "gemm": self._gemm,
            "matmul": self._matmul,
            "matmul_add": self._matmul,
            "forward_conv": self._forward,
        }[verdict.kind or ""]
        fold(verdict, affine, dtype)
        self.targets.add(producer.id)
        if verdict.kind == "forward_conv":
            tensors = (bn.inputs[0], producer.outputs[0])
        else:
            tensors = (producer.inputs[0], bn.outputs[0])
        return FoldRecord(
            verdict=verdict,
            status="folded",
            target_index=_index(producer),
            add_index=_index(verdict.add or bn) if verdict.kind in _LINEAR_WITH_ADD else None,
            ref_tensors=tensors,
            new_tensors=tensors,
            matched_by="bnlint",
        )

    def _dtype(self, bn: Node, producer: Node) -> str:
        for name in (bn.outputs[0], producer.outputs[0], producer.input("weight")):
            dtype = self.graph.dtype(name)
            if dtype is not None:
                return dtype
        return "float32"

    def _conv(self, verdict: FoldVerdict, affine: BNAffine, dtype: str) -> None:
        producer = verdict.producer
        family = verdict.kind or "conv"
        groups = int(producer.attrs.get("groups", 1))
        weight = fold_weight(self._value(producer, "weight"), affine, family, groups)
        bias = fold_bias(self._value(producer, "bias"), affine)
        self._set_inputs(producer, weight, bias, dtype)
        self._absorb(verdict.bn, producer)

    def _gemm(self, verdict: FoldVerdict, affine: BNAffine, dtype: str) -> None:
        producer = verdict.producer
        attrs = producer.attrs
        family = "conv" if attrs.get("transB") else "linear"  # (N, K) has N on axis 0
        weight = fold_weight(self._value(producer, "weight"), affine, family)
        c = self._value(producer, "bias")
        beta = float(attrs.get("beta", 1.0))
        bias = fold_bias(None if c is None else c * beta, affine)
        self._set_inputs(producer, weight, bias, dtype)
        proto = self.nodes[_index(producer)]
        kept = [a for a in proto.attribute if a.name != "beta"]
        del proto.attribute[:]
        proto.attribute.extend([*kept, helper.make_attribute("beta", 1.0)])
        self._absorb(verdict.bn, producer)

    def _matmul(self, verdict: FoldVerdict, affine: BNAffine, dtype: str) -> None:
        producer, add, bn = verdict.producer, verdict.add, verdict.bn
        weight = fold_weight(self._value(producer, "weight"), affine, "linear")
        self._set_input(producer, 1, weight, dtype)
        if add is None:  # MatMul -> BN: the shift becomes a new Add in the BN's place
            bias_name = self._new_tensor(f"{bn.name or 'bn'}.folded_bias", affine.shift, dtype)
            self.nodes[_index(bn)] = helper.make_node(
                "Add",
                [bn.inputs[0], bias_name],
                [bn.outputs[0]],
                name=self._unique(f"{bn.name or 'bn'}.folded_bias_add"),
            )
            return
        slot = 1 if self.graph.is_constant(add.inputs[1]) else 0
        constant = self.graph.param(add.inputs[slot])
        self._set_input(add, slot, fold_bias(constant, affine), dtype)
        self._absorb(bn, add)

    def _forward(self, verdict: FoldVerdict, affine: BNAffine, dtype: str) -> None:
        conv, bn = verdict.producer, verdict.bn
        weight, bias = forward_fold(self._value(conv, "weight"), self._value(conv, "bias"), affine)
        self._set_inputs(conv, weight, bias, dtype)
        proto = self.nodes[_index(conv)]
        proto.input[0] = bn.inputs[0]
        self.nodes[_index(bn)] = None
        self.dropped_values.add(bn.outputs[0])

    # -- helpers ----------------------------------------------------------------------------
    def _value(self, node: Node, role: str) -> np.ndarray | None:
        name = node.input(role)
        return None if name is None else np.asarray(self.graph.param(name), dtype=np.float64)

    def _set_inputs(self, node: Node, weight: np.ndarray, bias: np.ndarray, dtype: str) -> None:
        self._set_input(node, 1, weight, dtype)
        self._set_input(node, 2, bias, dtype)

    def _set_input(self, node: Node, slot: int, values: np.ndarray, dtype: str) -> None:
        proto = self.nodes[_index(node)]
        current = proto.input[slot] if slot < len(proto.input) else ""
        sole_reader = current and [n.id for n in self.graph.consumers(current)] == [node.id]
        if sole_reader and current in self.initializers and current not in self.declared_inputs:
            tensor = to_tensor(values, dtype, current)
            self.model.graph.initializer[self.initializers[current]].CopyFrom(tensor)
            self.written.add(current)
            return
        base = current or f"{node.name or node.source_op}.{('weight', 'bias')[slot == 2]}"
        name = self._new_tensor(f"{base}_bnfold", values, dtype)
        while len(proto.input) <= slot:
            proto.input.append("")
        proto.input[slot] = name

    def _new_tensor(self, base: str, values: np.ndarray, dtype: str) -> str:
        name = self._unique(base)
        self.written.add(name)
        self.model.graph.initializer.append(to_tensor(values, dtype, name))
        self.initializers[name] = len(self.model.graph.initializer) - 1
        return name

    def _unique(self, base: str) -> str:
        name, counter = base, 1
        while name in self.names:
            counter += 1
            name = f"{base}_{counter}"
        self.names.add(name)
        return name

    def _absorb(self, bn: Node, producer: Node) -> None:
        """``producer`` takes over the BN's output name; the BN node goes."""
        proto = self.nodes[_index(producer)]
        self.dropped_values.add(proto.output[0])
        proto.output[0] = bn.outputs[0]
        self.nodes[_index(bn)] = None

    # -- finishing ---------------------------------------------------------------------------
    def _live_nodes(self) -> set[int]:
        read = names_read(self.nodes) | {o.name for o in self.model.graph.output}
        return {
            i
            for i, node in enumerate(self.nodes)
            if node is not None and any(name in read for name in node.output)
        }

    def finish(self, records: list[FoldRecord]) -> ModelProto:
        graph = self.model.graph
        self._drop_dead_nodes()
        positions = {}
        kept = []
        for index, node in enumerate(self.nodes):
            if node is not None:
                positions[index] = len(kept)
                kept.append(node)
        del graph.node[:]
        graph.node.extend(kept)
        read = names_read(graph.node) | {o.name for o in graph.output}
        unused = {t.name for t in graph.initializer} - read
        initializers = [t for t in graph.initializer if t.name not in unused]
        del graph.initializer[:]
        graph.initializer.extend(initializers)
        inputs = [v for v in graph.input if v.name not in unused]
        del graph.input[:]
        graph.input.extend(inputs)
        values = [v for v in graph.value_info if v.name not in self.dropped_values]
        del graph.value_info[:]
        graph.value_info.extend(values)
        for record in records:  # records are this fold's own: updated in place
            if record.status == "folded":
                record.target_index = positions.get(record.target_index)
                record.add_index = positions.get(record.add_index)
        return self.model

    def _drop_dead_nodes(self) -> None:
        """Remove nodes that fed only what the fold removed (e.g. a zero-bias plumbing chain)."""
        targets = self._target_positions()
        while True:
            live_now = self._live_nodes()
            dead = [
                i
                for i in self.live_before - live_now
                if self.nodes[i] is not None and i not in targets
            ]
            if not dead:
                return
            for index in dead:
                self.dropped_values.update(self.nodes[index].output)
                self.nodes[index] = None

    def _target_positions(self) -> set[int]:
        return {self.graph.node(node_id).location.node_index for node_id in self.targets}


def _index(node: Node) -> int:
    """The position of a top-level node in the ModelProto's node list."""
    assert node.location is not None and node.location.node_index is not None
    return node.location.node_index
