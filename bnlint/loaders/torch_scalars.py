"""Scalar values through aten operators, without torch: the arithmetic of sizes.

Both TorchScript readers (static and trusted) walk a program op by op. Integer arithmetic
on sizes (``torch.size(x, 0)``, ``torch.floordiv(dim, heads)``) is evaluated here, so a
later ``reshape`` knows its target (:mod:`bnlint.loaders.torch_shapes`). Anything not
known is :data:`UNKNOWN`: no guess is ever made. Values stay in TorchScript's ranges: an
integer beyond int64 is unknown, so crafted code cannot grow a number without bound.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from typing import Any


class _Unknown:
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        raise TypeError("an unknown value has no truth value")


UNKNOWN: Any = _Unknown()
NOT_SCALAR: Any = object()  # scalar_op: the operator is not a scalar operator


def known(*values: Any) -> bool:
    return not any(v is UNKNOWN for v in values)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float))  # bool included: torch.eq(flag, True)


INT64 = 2**63


def _bounded(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -INT64 <= value < INT64:
        return UNKNOWN
    if isinstance(value, float) and math.isnan(value):
        return value
    return value


def _power(base: Any, exponent: Any) -> Any:
    if isinstance(exponent, (int, float)) and abs(exponent) > 64:
        return UNKNOWN
    if isinstance(base, int) and abs(base) >= INT64:
        return UNKNOWN
    return base**exponent


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "floordiv": operator.floordiv,
    "floor_divide": operator.floordiv,
    "true_divide": operator.truediv,
    "remainder": operator.mod,
    "div": operator.truediv,
    "pow": _power,
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "gt": operator.gt,
    "le": operator.le,
    "ge": operator.ge,
    "__and__": lambda a, b: a and b,
    "__or__": lambda a, b: a or b,
    "__xor__": operator.xor,
    "min": min,
    "max": max,
}


def scalar_op(op: str, args: Sequence[Any]) -> Any:
    """The value of a scalar operator on known arguments, UNKNOWN, or NOT_SCALAR."""
    if op in ("__is__", "__isnot__") and len(args) == 2:
        left, right = args
        if left is UNKNOWN or right is UNKNOWN:
            return UNKNOWN
        same = left is None and right is None
        if (left is None) != (right is None):
            same = False
        elif not (left is None and right is None):
            return UNKNOWN
        return same if op == "__is__" else not same
    if op == "__not__" and len(args) == 1:
        return UNKNOWN if args[0] is UNKNOWN or not isinstance(args[0], bool) else not args[0]
    if op == "neg" and len(args) == 1:
        return _bounded(-args[0]) if _number(args[0]) else UNKNOWN
    if op in ("Int", "Float", "Bool", "NumToTensor", "ScalarImplicit") and len(args) == 1:
        return _convert(op, args[0])
    if op == "len" and len(args) == 1:
        return len(args[0]) if isinstance(args[0], (list, tuple, str)) else UNKNOWN
    if op in ("__getitem__", "select") and len(args) == 2:
        return _index(args[0], args[1])
    if op in _ARITHMETIC and len(args) == 2:
        left, right = args
        if not (_number(left) and _number(right)):
            return UNKNOWN
        try:
            result = _ARITHMETIC[op](left, right)
        except (ArithmeticError, ValueError, OverflowError, TypeError):
            return UNKNOWN
        return UNKNOWN if isinstance(result, complex) else _bounded(result)
    return NOT_SCALAR


def _convert(op: str, value: Any) -> Any:
    if not _number(value):
        return UNKNOWN
    if op == "Int":
        return int(value)
    if op == "Float":
        return float(value)
    if op == "Bool":
        return bool(value)
    return value


def _index(sequence: Any, index: Any) -> Any:
    if isinstance(sequence, (list, tuple)) and isinstance(index, int):
        return sequence[index] if -len(sequence) <= index < len(sequence) else UNKNOWN
    if isinstance(sequence, dict) and isinstance(index, (str, int)):
        return sequence.get(index, UNKNOWN)
    return UNKNOWN


def size_of(shape: tuple[int | None, ...] | None, dim: Any = None) -> Any:
    """``torch.size(x)`` (a list) or ``torch.size(x, dim)`` from a shape."""
    if shape is None:
        return UNKNOWN
    dims = [UNKNOWN if d is None else d for d in shape]
    if dim is None:
        return dims
    if not isinstance(dim, int) or not -len(dims) <= dim < len(dims):
        return UNKNOWN
    return dims[dim]
