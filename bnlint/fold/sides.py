"""The two sides of a comparison, read only through bnlint's own readers.

Initializers come from a loaded :class:`ModelGraph`'s parameters (memory-mapped, external
data resolved and confined by :class:`bnlint.loaders.external.ExternalDataResolver`) or,
for tensors a fold wrote in memory, from their embedded bytes. Nothing here lets onnx read
a file: an external tensor bnlint's loader did not resolve is unreadable, never looked up
relative to the working directory.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np
from onnx import ModelProto, TensorProto

from bnlint.fold.exact import EvalError, SizeLimit
from bnlint.fold.exact_ops import check_size
from bnlint.fold.exact_values import dtype_name
from bnlint.fold.regional import Constants, Side
from bnlint.fold.regions import ModelView, Scope
from bnlint.fold.results import FoldError
from bnlint.graph import ModelGraph
from bnlint.loaders import read_onnx_tensor
from bnlint.params import UnreadableParameter


def read_tensor(tensor: TensorProto) -> np.ndarray:
    """An embedded tensor (a Constant attribute, a folded weight), size checked first."""
    if tensor.data_location == TensorProto.EXTERNAL:
        raise EvalError(f"tensor {tensor.name!r} keeps its data in an external file")
    check_size(int(np.prod(tensor.dims, dtype=np.float64)), f"tensor {tensor.name!r}")
    try:
        return np.asarray(read_onnx_tensor(tensor))
    except UnreadableParameter as error:
        raise EvalError(str(error)) from None


def graph_reader(graph: ModelGraph) -> Callable[[Scope, str], tuple[np.ndarray, str] | None]:
    def read(scope: Scope, name: str) -> tuple[np.ndarray, str] | None:
        key = scope.param_key(name)
        tensor = scope.initializers[name]
        if key in graph.params:
            shape = graph.params.shape(key)
            if shape is not None:
                check_size(int(np.prod(shape, dtype=np.float64)), f"initializer {name!r}")
            try:
                return np.asarray(graph.params.get(key)), dtype_name(tensor.data_type)
            except (UnreadableParameter, OSError, ValueError) as error:
                # An input bnlint cannot read is bad input, not an open question.
                where = Path(str(graph.path)).name
                raise FoldError(f"tensor {name!r} of {where} cannot be read: {error}") from None
        return read_tensor(tensor), dtype_name(tensor.data_type)

    return read


def written_reader(
    model: ModelProto, graph: ModelGraph, written: Collection[str]
) -> Callable[[Scope, str], tuple[np.ndarray, str] | None]:
    """The folded side of bnlint's own fold: tensors it wrote from memory, the rest from
    the original model's parameters (the same names hold the same values)."""
    original = graph_reader(graph)

    def read(scope: Scope, name: str) -> tuple[np.ndarray, str] | None:
        tensor = scope.initializers[name]
        if scope.param_key(name) in written or (
            tensor.data_location != TensorProto.EXTERNAL and not _known(graph, scope, name)
        ):
            return read_tensor(tensor), dtype_name(tensor.data_type)
        return original(scope, name)

    return read


def _known(graph: ModelGraph, scope: Scope, name: str) -> bool:
    return scope.param_key(name) in graph.params


def types_of(graph: ModelGraph) -> Callable[[Scope, str], tuple]:
    def type_of(scope: Scope, name: str) -> tuple:
        key = scope.param_key(name)
        try:
            return graph.shape(key), graph.dtype(key)
        except Exception:  # inference failed on a hostile model: probe from the weights
            return None, None

    return type_of


def side(model: ModelProto, graph: ModelGraph, reader=None) -> Side:
    view = ModelView(model)
    constants = Constants(view, reader or graph_reader(graph), read_tensor)
    return Side(view, constants, types_of(graph))


__all__ = ["EvalError", "SizeLimit", "graph_reader", "read_tensor", "side", "written_reader"]
