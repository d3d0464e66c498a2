"""Constant plumbing in front of parameters, evaluated while an ONNX graph is built.

A mixin of the ONNX front end's graph builder: a Constant node, or an Identity/Cast/
Shape/…/CastLike node whose inputs are all known constants, becomes parameters instead
of a node (see :mod:`bnlint.loaders.onnx_const` for the evaluators).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from onnx import NodeProto, TensorProto

from bnlint.graph import UnreadableParameter
from bnlint.loaders.onnx_const import EVALUATORS, MAX_FOLD_BYTES, SHAPE_ONLY, evaluate
from bnlint.loaders.onnx_scope import Scope
from bnlint.loaders.onnx_tensors import (
    attributes,
    constant_value,
    describe,
    raw_floats,
    read_embedded,
)
from bnlint.onnx.elem_types import numpy_dtype_by_name

if TYPE_CHECKING:
    from bnlint.graph import ModelGraph


class ConstantPlumbing:
    """Evaluates constant nodes into ``self.graph``'s parameters (needs ``graph``, ``opset``)."""

    graph: ModelGraph
    opset: int

    def _fold(self, node: NodeProto, inputs: list[str], scope: Scope) -> bool:
        """Evaluate a constant node; True when it became parameters instead of a node."""
        op_type = node.op_type
        if op_type == "Constant":
            tensor = next(
                (a.t for a in node.attribute if a.name == "value" and a.HasField("t")), None
            )
            if tensor is not None and tensor.data_location != TensorProto.EXTERNAL:
                # Any size: read lazily from the parsed attribute, as an initializer is.
                self._define_source(scope, node.output[0], tensor)
                return True
            value = constant_value(node)
            if value is None:
                return False
            self._define_constant(scope, node.output[0], value)
            return True
        if op_type not in EVALUATORS or not inputs or not all(node.output):
            return False
        present = [name for name in inputs if name]
        if not present:
            return False
        if op_type == "Identity" and self.graph.is_constant(present[0]):
            self._alias(scope, node.output[0], present[0])
            return True
        values = self._fold_inputs(op_type, inputs, present)
        if values is None:
            return False
        outputs = evaluate(op_type, values, attributes(node), self.opset)
        if outputs is None or len(outputs) != len(node.output):
            return False
        for name, value in zip(node.output, outputs, strict=True):
            self._define_constant(scope, name, value)
        return True

    def _fold_inputs(self, op_type: str, inputs: list[str], present: list[str]) -> list | None:
        """The values an evaluator needs, or None when the node is not constant."""
        graph, params = self.graph, self.graph.params

        def small(name: str) -> bool:
            shape = params.shape(name)
            return shape is not None and int(np.prod(shape, dtype=object)) * 8 <= MAX_FOLD_BYTES

        if op_type in SHAPE_ONLY:
            shape = graph.shape(present[0]) if present[0] in params else self._static(present[0])
            if shape is None or not all(isinstance(d, int) for d in shape):
                return None
            return [_ShapeOnly(shape)]
        if op_type == "CastLike" and len(present) == 2:
            # Only the target's dtype matters (dynamo casts a zero bias like the activation).
            target = numpy_dtype_by_name(graph.dtype(present[1]))
            if target is None or not graph.is_constant(present[0]) or not small(present[0]):
                return None
            try:
                return [params.get(present[0]), np.zeros(0, dtype=target)]
            except UnreadableParameter:
                return None
        if not all(graph.is_constant(name) and small(name) for name in present):
            return None
        try:
            return [params.get(name) if name else None for name in inputs]
        except Exception:  # an unreadable tensor stays a node; rules see it as non-constant
            return None

    def _static(self, name: str) -> tuple | None:
        """A runtime tensor's shape if it is known without running inference."""
        record = self.graph.tensors.get(name)
        if record is not None and record.shape is not None:
            return record.shape
        return self.graph.shape(name)

    def _define_constant(self, scope: Scope, name: str, value: np.ndarray) -> None:
        key = scope.define(name)
        self.graph.params.add(key, value)
        record = self.graph.tensor(key)
        record.shape, record.dtype, record.is_param = tuple(value.shape), value.dtype.name, True

    def _define_source(self, scope: Scope, name: str, tensor: TensorProto) -> None:
        key = scope.define(name)
        self.graph.params.add_sources({key: tensor}, describe, read_embedded, raw_floats)
        record = self.graph.tensor(key)
        record.shape, record.dtype = describe(tensor)
        record.is_param = True

    def _alias(self, scope: Scope, name: str, source: str) -> None:
        key = scope.define(name)
        self.graph.params.alias(key, source)
        self.graph.tensor(key).is_param = True


class _ShapeOnly:
    """Stands in for a tensor whose values are unknown but whose shape is static."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape
        self.size = int(np.prod(shape, dtype=np.int64))
        self.ndim = len(shape)
