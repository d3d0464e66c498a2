"""Whole ONNX models made runnable for the numeric level.

:func:`light_model` copies a model with its initializers as array-backed stubs (ONNX Runtime
reads them from bnlint's readers; the null fold's values replace some without copying every
weight); :class:`ReferenceRunner` runs a model in ``onnx.reference`` when ONNX Runtime cannot,
only if every op's output is bounded by its inputs. The comparisons are in
:mod:`bnlint.fold.runtime_level`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from onnx import ModelProto, TensorProto, helper

from bnlint.runtime import RunnerUnavailable


def onnx_elem_type(dtype: str) -> int:
    """The ONNX element type of a numpy dtype name (``bfloat16`` included)."""
    if dtype == "bfloat16":
        return TensorProto.BFLOAT16
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def light_model(model: ModelProto, arrays, overrides: Mapping[str, np.ndarray]):
    """(a copy of ``model`` whose top-level initializers are array-backed stubs, the array
    provider with ``overrides`` in place): the null fold without copying every weight."""
    from bnlint.onnx.runtime import IN_MEMORY

    light = ModelProto()
    for field, value in model.ListFields():
        if field.name != "graph":
            if field.message_type is not None and not _repeated(field):
                getattr(light, field.name).CopyFrom(value)
            elif _repeated(field):
                getattr(light, field.name).extend(value)
            else:
                setattr(light, field.name, value)
    constants = {
        node.output[0]: node
        for node in model.graph.node
        if node.op_type == "Constant" and node.output and node.output[0] in overrides
    }
    for field, value in model.graph.ListFields():
        if field.name == "initializer":
            continue
        if field.name == "node" and constants:  # an overridden Constant becomes a stub
            light.graph.node.extend(
                n for n in value if n.output[:1] != [] and n.output[0] not in constants
            )
            continue
        target = getattr(light.graph, field.name)
        if _repeated(field):
            target.extend(value)
        elif field.message_type is not None:
            target.CopyFrom(value)
        else:
            setattr(light.graph, field.name, value)
    for tensor in model.graph.initializer:
        stub = light.graph.initializer.add()
        stub.name, stub.data_type = tensor.name, tensor.data_type
        stub.dims.extend(tensor.dims)
        if (
            tensor.name in overrides
            or tensor.data_location == TensorProto.EXTERNAL
            or tensor.raw_data
        ):
            stub.data_location = TensorProto.EXTERNAL
            entry = stub.external_data.add()
            entry.key, entry.value = "location", IN_MEMORY
        else:
            stub.CopyFrom(tensor)

    for name in constants:
        stub = light.graph.initializer.add()
        stub.name = name
        stub.data_type = onnx_elem_type(np.asarray(overrides[name]).dtype.name)
        stub.dims.extend(np.shape(overrides[name]))
        stub.data_location = TensorProto.EXTERNAL
        entry = stub.external_data.add()
        entry.key, entry.value = "location", IN_MEMORY

    def provider(name: str):
        if name in overrides:
            return overrides[name]
        found = arrays(name)
        if found is None:
            tensor = next((t for t in model.graph.initializer if t.name == name), None)
            if tensor is not None and tensor.data_location != TensorProto.EXTERNAL:
                from bnlint.fold.sides import read_tensor

                return read_tensor(tensor)
        return found

    return light, provider


def _repeated(field: Any) -> bool:
    found = getattr(field, "is_repeated", None)
    return bool(found) if found is not None else getattr(field, "label", None) == 3


class ReferenceRunner:
    """A whole model in ``onnx.reference`` (the fallback when ONNX Runtime cannot run it),
    with the :class:`bnlint.runtime.ModelRunner` interface. Only models whose every op has
    an output bounded by its inputs are run (no ConstantOfShape, Expand, Tile, Resize…):
    bnlint cannot size those before onnx.reference allocates them. Initializers come from
    ``arrays`` (bnlint's readers), never from onnx's own file access."""

    def __init__(self, model: ModelProto, arrays, overrides=None) -> None:
        from bnlint.fold.exact import HANDLERS, REFERENCE_OPS
        from bnlint.fold.reference_limits import loop_problem
        from bnlint.fold.regions import bodies
        from bnlint.runtime import InputSpec

        allowed = (set(HANDLERS) | REFERENCE_OPS | {"If", "Loop", "Scan"}) - UNBOUNDED_OPS

        def check(graph) -> None:
            for node in graph.node:
                if node.domain not in ("", "ai.onnx") or node.op_type not in allowed:
                    raise RunnerUnavailable(
                        f"onnx.reference is not run on {node.op_type} (bnlint cannot bound "
                        "its output before it is allocated)"
                    )
                for _, _, body in bodies(node):
                    check(body)

        check(model.graph)
        problem = loop_problem(model.graph)  # time: a Loop's trip count, bounded first
        if problem is not None:
            raise RunnerUnavailable(problem)
        light, provider = light_model(model, arrays, overrides or {})
        for index, tensor in enumerate(light.graph.initializer):
            if tensor.data_location == TensorProto.EXTERNAL:
                values = provider(tensor.name)
                if values is None:
                    raise RunnerUnavailable(f"initializer {tensor.name!r} could not be read")
                light.graph.initializer[index].CopyFrom(_tensor(values, tensor))
        self._model = light
        initializers = {t.name for t in light.graph.initializer}
        self.inputs = [
            InputSpec(
                value.name,
                tuple(
                    d.dim_value if d.HasField("dim_value") else d.dim_param or None
                    for d in value.type.tensor_type.shape.dim
                ),
                _spec_dtype(value.type.tensor_type.elem_type),
            )
            for value in light.graph.input
            if value.name not in initializers
        ]
        self.output_names = [value.name for value in light.graph.output]

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        from onnx.reference import ReferenceEvaluator

        try:
            values = ReferenceEvaluator(self._model).run(None, dict(feeds))
        except Exception as error:
            raise RunnerUnavailable(
                f"onnx.reference failed: {type(error).__name__}: {error}"
            ) from None
        return [np.asarray(value) for value in values]


UNBOUNDED_OPS = frozenset(
    {"ConstantOfShape", "Expand", "Tile", "Resize", "Upsample", "Range", "Pad", "OneHot"}
)


def _tensor(values: np.ndarray, like: TensorProto) -> TensorProto:
    from bnlint.onnx.model_io import to_tensor

    dtype = "bfloat16" if like.data_type == TensorProto.BFLOAT16 else None
    if dtype is None:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(like.data_type)).name
    return to_tensor(np.asarray(values), dtype, like.name)


def _spec_dtype(elem_type: int) -> str:
    if elem_type == TensorProto.BFLOAT16:
        return "bfloat16"
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name


__all__ = ["ReferenceRunner", "light_model", "onnx_elem_type"]
