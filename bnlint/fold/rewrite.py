"""Execute the fold plan on an ONNX ModelProto: BN nodes disappear into their neighbours.

The rewrite works on a copy (external data inlined through the validated resolver). A
value is written in place only into a tensor this fold created or one that nothing but
the folded node reads (no other node, no graph output, no If/Loop body, not a graph
input); anything else is cloned under a new name. Tensor names downstream of each BN are
kept (the node that produced the BN's input takes over the BN's output name), so
consumers and graph outputs line up by name. Folds compose: a second BN folding into the
same Conv (``Conv -> BN -> BN``, ``BN -> Conv -> BN``) starts from the values the first
one wrote. BNs inside If/Loop/Scan bodies are folded inside their body.

Arithmetic is float64 (:mod:`bnlint.fold.affine`); results are rounded once into the
model's dtype. Constant plumbing and initializers that only fed removed nodes are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

import numpy as np
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, helper

from bnlint.analysis.bn_arrays import affine_terms
from bnlint.fold.affine import BNAffine, Rounded, fold_bias, fold_weight_rounded
from bnlint.fold.rewrite_graph import (
    all_names,
    along,
    drop_unread,
    live,
    overflow,
    rank,
    scaled,
    without_dead,
)
from bnlint.fold.verdicts import FoldRecord, FoldVerdict, plan
from bnlint.fold.working_copy import WorkingCopy, working_copy
from bnlint.graph import ModelGraph, Node
from bnlint.onnx.model_io import to_tensor

FAMILY = {"conv": "conv", "conv_transpose": "conv_transpose", "gemm": "linear"}


def fold_model(
    model: ModelProto, graph: ModelGraph, keep: Iterable[str] = ()
) -> tuple[ModelProto, list[FoldRecord], frozenset[str]]:
    """The folded copy of ``model``, one record per BN (graph order) and the names of the
    initializers the fold wrote (every other initializer is the original's, unchanged).

    ``keep`` holds regular expressions: a BN whose node name or module path matches one
    is left in place.
    """
    patterns = [re.compile(pattern) for pattern in keep]
    verdicts = plan(graph)
    rewriter = _Rewriter(working_copy(model, graph, _rewritten_weights(verdicts)), graph)
    records = []
    for verdict in verdicts:
        names = [n for n in (verdict.bn.name, verdict.bn.scope) if n]
        if verdict.foldable and any(p.search(n) for p in patterns for n in names):
            records.append(_not_folded(verdict, "kept", "left in place by --keep"))
        else:
            records.append(rewriter.apply(verdict))
    return rewriter.finish(), records, frozenset(rewriter.written)


def _rounded(values: np.ndarray | Rounded) -> np.ndarray:
    return values.value if isinstance(values, Rounded) else values


def _rewritten_weights(verdicts: list[FoldVerdict]) -> set[str]:
    """Top-level producer weights the plan rewrites: copied without their data (see
    :mod:`bnlint.fold.working_copy`; any the rewrite leaves alone get it back)."""
    return {
        v.producer.inputs[1]
        for v in verdicts
        if v.foldable and v.producer is not None and not v.producer.subgraph
        if len(v.producer.inputs) > 1 and v.producer.inputs[1]
    }


def _not_folded(verdict: FoldVerdict, code: str | None = None, reason: str | None = None):
    return FoldRecord(
        verdict=verdict,
        status="not-folded",
        reason_code=code or verdict.reason_code,
        reason=reason or verdict.reason,
    )


class _Rewriter:
    def __init__(self, copy: WorkingCopy, graph: ModelGraph) -> None:
        self.copy = copy
        self.model = model = copy.model
        self.graph = graph
        self.bodies: dict[str, GraphProto] = {"": model.graph}
        self._index_bodies(model.graph, "")
        self.names = all_names(model.graph) | set(graph.tensors)
        self.written: set[str] = set()  # initializers given new values (scoped keys)
        self.values: dict[str, Any] = {}  # float64 values (or their recipe) by scoped key
        self.owned: set[str] = set()  # tensors this fold created
        self.removed: set[int] = set()  # ids of removed node protos
        self.renamed: dict[str, str] = {}  # dropped tensor names
        self.affines = affine_terms(graph)
        self.lists: dict[str, list[NodeProto]] = {}
        self.originals: dict[str, list[NodeProto]] = {}
        self.live: dict[str, set[int]] = {}
        self.overflow: float | None = None
        self.init_index: dict[str, dict[str, int]] = {}
        self.producer_index: dict[str, dict[str, NodeProto]] = {}  # see _producers

    def _index_bodies(self, graph: GraphProto, key: str) -> None:
        from bnlint.fold.regions import bodies, body_key

        for index, node in enumerate(graph.node):
            many = any(a.type == AttributeProto.GRAPHS for a in node.attribute)
            for attribute, number, body in bodies(node):
                child = body_key(key, node, index, attribute, number, many)
                self.bodies[child] = body
                self._index_bodies(body, child)

    # -- one BN -------------------------------------------------------------------------
    def apply(self, verdict: FoldVerdict) -> FoldRecord:
        if not verdict.foldable:
            return _not_folded(verdict)
        bn, producer = verdict.bn, verdict.producer
        affine = self._affine(bn)
        dtype = self._dtype(bn, producer)
        self.overflow = None
        if verdict.kind == "forward_conv":
            self._forward(verdict, affine, dtype)
        else:
            self._backward(verdict, affine, dtype)
        record = FoldRecord(
            verdict=verdict,
            status="folded",
            matched_by="bnlint",
            target_name=producer.display_name,
            target_op=producer.source_op,
        )
        if self.overflow is not None:
            record.problem_code = "overflow"
            record.problem = (
                f"the folded weights overflow {dtype} (a value of {self.overflow:.3g} became "
                "infinite)"
            )
        return record

    def _affine(self, bn: Node) -> BNAffine:
        terms = self.affines.get(bn.id)
        if terms is not None:
            return BNAffine(mult=terms[0], shift=terms[1])
        params = [self.graph.param(bn.input(role)) for role in ("scale", "bias", "mean", "var")]
        return BNAffine.from_params(*params, eps=float(bn.attrs.get("eps", 1e-5)))

    def _dtype(self, bn: Node, producer: Node) -> str:
        for name in (bn.outputs[0], producer.outputs[0], producer.input("weight")):
            dtype = self.graph.dtype(name)
            if dtype is not None:
                return dtype
        return "float32"

    def _backward(self, verdict: FoldVerdict, affine: BNAffine, dtype: str) -> None:
        bn, producer, add, kind = verdict.bn, verdict.producer, verdict.add, verdict.kind or ""
        attrs = producer.attrs
        family = FAMILY.get(kind, "linear")
        if kind == "gemm" and attrs.get("transB"):
            family = "conv"  # (N, K): output features on axis 0
        groups = int(attrs.get("groups", 1))
        weight = self._value(producer, 1, native=True)
        self._set_input(
            producer, 1, fold_weight_rounded(weight, affine, family, groups, dtype), dtype
        )
        channel_axis = "last" if family == "linear" or kind == "gemm" else "channel"
        own_bias = self._value(producer, 2)
        if kind == "gemm":
            beta = float(attrs.get("beta", 1.0))
            own_bias = None if own_bias is None else own_bias * beta
            self._set_attribute(producer, "beta", 1.0)
        if add is not None:
            if own_bias is not None:
                self._set_input(producer, 2, scaled(own_bias, affine.mult, channel_axis), dtype)
            slot = 1 if self.graph.is_constant(add.inputs[1]) else 0
            constant = self._value(add, slot)
            size = None if channel_axis == "last" else rank(self.graph, producer)
            mult, shift = along(affine, channel_axis, size)
            self._set_input(add, slot, constant * mult + shift, dtype)
        inserted = None
        if add is None and kind.startswith("matmul"):
            inserted = self._insert_add(verdict, affine.shift, dtype)
        elif add is None:
            self._set_input(producer, 2, fold_bias(own_bias, affine), dtype)
        chain = [
            self._proto(producer),
            inserted,
            *(self._proto(n) for n in (add, verdict.via) if n),
        ]
        chain = [proto for proto in chain if proto is not None]
        if len(chain) > 1:
            self._rename_between(chain)
            self.producer_index.pop(bn.subgraph or "", None)  # rebuilt on next use
        self._drop_bn(bn)

    def _rename_between(self, chain: list[NodeProto]) -> None:
        """Tensors between the producer and the BN now hold other values: new names, so no
        reader (or verifier) mistakes them for the original ones."""
        for upstream, downstream in pairwise(chain):
            old = upstream.output[0]
            new = self._unique(f"{old}_bnfold")
            upstream.output[0] = new
            for position, name in enumerate(downstream.input):
                if name == old:
                    downstream.input[position] = new
            self.renamed[old] = new

    def _insert_add(self, verdict: FoldVerdict, shift: np.ndarray, dtype: str) -> NodeProto:
        """MatMul (-> Transpose) -> BN: the shift becomes an Add right after the MatMul."""
        producer, bn = verdict.producer, verdict.bn
        nodes = self._nodes(producer.subgraph or "")
        proto = self._proto(producer)
        base = f"{bn.name or 'bn'}.folded_bias"
        bias = self._new_tensor(producer, base, shift, dtype)
        out = self._unique(f"{base}_in")
        add = helper.make_node(
            "Add", [out, bias], [proto.output[0]], name=self._unique(f"{base}_add")
        )
        proto.output[0] = out
        nodes.insert(next(i for i, n in enumerate(nodes) if n is proto) + 1, add)
        return add

    def _forward(self, verdict: FoldVerdict, affine: BNAffine, dtype: str) -> None:
        """BN -> Conv (no padding): scale the Conv's input channels, absorb the shift."""
        conv, bn = verdict.producer, verdict.bn
        weight = self._value(conv, 1, native=True)
        groups = int(conv.attrs.get("groups", 1) or 1)
        cout, per_group = weight.shape[0], weight.shape[1]
        # input channel of weight[o, j] is (o // (cout / groups)) * per_group + j
        index = (np.arange(cout) // (cout // groups))[:, None] * per_group + np.arange(per_group)
        shape = (cout, per_group) + (1,) * (weight.ndim - 2)
        mult = affine.mult[index].reshape(shape)
        shift = affine.shift[index].reshape(shape)
        with np.errstate(over="ignore", invalid="ignore"):
            new_weight = weight * mult
            absorbed = (weight * shift).reshape(cout, -1).sum(axis=1)
        bias = self._value(conv, 2)
        base = np.zeros(cout) if bias is None else bias
        self._set_input(conv, 1, new_weight, dtype)
        self._set_input(conv, 2, base + absorbed, dtype)
        self._proto(conv).input[0] = self._proto_input(bn)
        proto = self._proto(bn)
        self.removed.add(id(proto))
        self.renamed[proto.output[0]] = ""

    # -- helpers ------------------------------------------------------------------------
    def _nodes(self, key: str) -> list[NodeProto]:
        """The body's nodes as one stable list (protobuf hands out a new wrapper per access:
        identity only holds within this list); written back by :meth:`finish`."""
        if key not in self.lists:
            self.lists[key] = list(self.bodies[key].node)
            self.originals[key] = list(self.lists[key])
            self.live[key] = live(self.originals[key], self.bodies[key])
        return self.lists[key]

    def _initializers(self, key: str) -> dict[str, int]:
        """Initializer positions of a body by name (kept current as tensors are added)."""
        if key not in self.init_index:
            body = self.bodies[key]
            self.init_index[key] = {t.name: i for i, t in enumerate(body.initializer)}
        return self.init_index[key]

    def _producers(self, key: str) -> dict[str, NodeProto]:
        """The node producing each tensor of a body (kept current as outputs are renamed)."""
        if key not in self.producer_index:
            self.producer_index[key] = {
                name: node for node in self._nodes(key) for name in node.output if name
            }
        return self.producer_index[key]

    def _proto(self, node: Node) -> NodeProto:
        assert node.location is not None and node.location.node_index is not None
        key = node.subgraph or ""
        self._nodes(key)
        return self.originals[key][node.location.node_index]

    def _proto_input(self, bn: Node) -> str:
        return self._proto(bn).input[0]

    def _key(self, node: Node, name: str) -> str:
        return f"{node.subgraph}::{name}" if node.subgraph else name

    def _value(self, node: Node, slot: int, *, native: bool = False) -> np.ndarray | None:
        proto = self._proto(node)
        if slot >= len(proto.input) or not proto.input[slot]:
            return None
        key = self._key(node, proto.input[slot])
        if key in self.values:
            found = self.values[key]
            return found() if callable(found) else found
        value = np.asarray(self.graph.param(node.inputs[slot]))
        # ``native``: a float32/float16 weight stays as it is; its one use multiplies it by
        # float64 factors, so no float64 copy is made first (ResNet-50: 200 MB)
        return value if native and value.dtype.kind == "f" else value.astype(np.float64)

    def _sole_reader(self, node: Node, name: str) -> bool:
        """Whether only ``node`` reads ``name`` (and no graph output, body or input)."""
        key = self._key(node, name)
        if key in self.owned:
            return True
        record = self.graph.tensors.get(key)
        if record is None or record.is_graph_output or record.is_graph_input:
            return False
        if not self.graph.is_constant(key) or record.producer is not None:
            return False
        if name not in self._initializers(node.subgraph or ""):
            return False
        return {n.id for n in self.graph.consumers(key)} == {node.id}

    def _set_input(self, node: Node, slot: int, values: np.ndarray | Rounded, dtype: str) -> None:
        if isinstance(values, Rounded):  # a non-finite rounded value: was it finite before?
            low, high = float(values.value.min()), float(values.value.max())
            if not (np.isfinite(low) and np.isfinite(high)):
                self._check_range(values.exact(), dtype)
        else:
            self._check_range(values, dtype)
        proto = self._proto(node)
        body = self.bodies[node.subgraph or ""]
        current = proto.input[slot] if slot < len(proto.input) else ""
        if current and self._sole_reader(node, current):
            index = self._initializers(node.subgraph or "")[current]
            to_tensor(_rounded(values), dtype, current, into=body.initializer[index])
            if not node.subgraph:
                self.copy.written(index)
            key = self._key(node, current)
        else:
            role = ("input", "weight", "bias")[min(slot, 2)]
            base = current or f"{node.name or node.source_op}.{role}"
            name = self._new_tensor(node, f"{base}_bnfold", values, dtype)
            while len(proto.input) <= slot:
                proto.input.append("")
            proto.input[slot] = name
            key = self._key(node, name)
        self._remember(key, values)

    def _remember(self, key: str, values: np.ndarray | Rounded) -> None:
        exact = values.exact if isinstance(values, Rounded) else np.asarray(values, np.float64)
        self.values[key] = exact
        self.written.add(key)
        self.owned.add(key)

    def _check_range(self, values: np.ndarray, dtype: str) -> None:
        """Remember the largest finite value the cast to ``dtype`` turns infinite."""
        found = overflow(values, dtype)
        if found is not None:
            self.overflow = max(self.overflow or 0.0, found)

    def _new_tensor(self, node: Node, base: str, values: np.ndarray | Rounded, dtype: str) -> str:
        name = self._unique(base)
        body = self.bodies[node.subgraph or ""]
        self._initializers(node.subgraph or "")[name] = len(body.initializer)
        to_tensor(_rounded(values), dtype, name, into=body.initializer.add())
        self._remember(self._key(node, name), values)
        return name

    def _set_attribute(self, node: Node, name: str, value: float) -> None:
        proto = self._proto(node)
        kept = [a for a in proto.attribute if a.name != name]
        del proto.attribute[:]
        proto.attribute.extend([*kept, helper.make_attribute(name, value)])

    def _unique(self, base: str) -> str:
        name, counter = base, 1
        while name in self.names:
            counter += 1
            name = f"{base}_{counter}"
        self.names.add(name)
        return name

    def _drop_bn(self, bn: Node) -> None:
        """The node producing the BN's input takes over the BN's output name."""
        proto = self._proto(bn)
        producers = self._producers(bn.subgraph or "")
        source = producers[proto.input[0]]
        position = list(source.output).index(proto.input[0])
        self.renamed[source.output[position]] = proto.output[0]
        source.output[position] = proto.output[0]
        producers[proto.output[0]] = source
        self.removed.add(id(proto))

    # -- finishing ------------------------------------------------------------------------
    def finish(self) -> ModelProto:
        self.copy.fill()  # before initializers move
        for key in list(self.lists):
            nodes, body = self.lists[key], self.bodies[key]
            kept = [node for node in nodes if id(node) not in self.removed]
            kept = without_dead(kept, self.live[key], body)
            del body.node[:]
            body.node.extend(kept)
        for body in self.bodies.values():
            drop_unread(body, self.renamed)
        return self.model
