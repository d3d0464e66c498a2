"""The values the float64 evaluator (:mod:`bnlint.fold.exact`) passes between ops, and the
table of op handlers that :mod:`bnlint.fold.exact` and :mod:`bnlint.fold.exact_shapes` fill."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from onnx import NodeProto, TensorProto, helper

if TYPE_CHECKING:
    from bnlint.fold.exact import Evaluator

FLOATS = frozenset({"float16", "bfloat16", "float32", "float64"})


@dataclass
class Tensor:
    """A value (float64 for floating dtypes), its magnitude bound and its ONNX dtype."""

    value: np.ndarray
    dtype: str
    constant: bool = False
    mag: np.ndarray | None = None

    @property
    def magnitude(self) -> np.ndarray:
        return np.abs(self.value) if self.mag is None else self.mag


def as_tensor(array: np.ndarray, dtype: str, constant: bool) -> Tensor:
    value = np.asarray(array, dtype=np.float64) if dtype in FLOATS else np.asarray(array)
    return Tensor(value, dtype, constant)


def dtype_name(elem_type: int) -> str:
    if elem_type == TensorProto.BFLOAT16:
        return "bfloat16"
    return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type)).name


Handler = Callable[["Evaluator", NodeProto, list, dict], list[Tensor]]
HANDLERS: dict[str, Handler] = {}


def handles(*names: str):
    def register(function: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = function
        return function

    return register


def all_constant(inputs: Sequence[Tensor | None]) -> bool:
    return all(t is None or t.constant for t in inputs)


def output_tensor(value, dtype, inputs, mag=None) -> Tensor:
    return Tensor(np.asarray(value), dtype, all_constant(inputs), mag)
