"""PyTorch's pickle records (read by :mod:`bnlint.loaders.safe_pickle`) as plain values.

:func:`interpret` maps ``_rebuild_tensor_v2`` to :class:`TensorRecord`, ``OrderedDict`` to a
dict, ``build_intlist`` and friends to lists and ``__torch__`` classes to
:class:`ObjectRecord`; every other record stays an inert :class:`PickledObject`. It visits
each shared object once (a memo by identity), so a pickle that references one list from
two places at each of 60 levels costs 60 steps, not 2**60; dict keys are checked with
:func:`check_key` before they are hashed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bnlint.loaders.safe_pickle import PickledObject, StorageRef, check_key, describe

MAX_DEPTH = 200
MAX_VISITS = 5_000_000


@dataclass
class TensorRecord:
    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    requires_grad: bool = False


@dataclass
class ObjectRecord:
    """An instance of a class the file defines (``__torch__.…``): its state, not its code."""

    qualname: str
    state: dict[str, Any] = field(default_factory=dict)


_TENSOR_BUILDERS = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3"}
_PARAMETER_BUILDERS = {"_rebuild_parameter", "_rebuild_parameter_with_state"}
_LIST_BUILDERS = {
    "build_intlist",
    "build_doublelist",
    "build_boollist",
    "build_tensorlist",
    "build_complexlist",
}


class _Interpreter:
    """One :func:`interpret` run: a memo by object identity and a budget of visits."""

    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}
        self.keep: list[Any] = []  # keeps memoised objects alive so ids stay unique
        self.visits = 0

    def __call__(self, value: Any, depth: int) -> Any:
        if not isinstance(value, (list, tuple, dict, PickledObject)):
            return value
        key = id(value)
        if key in self.memo:
            return self.memo[key]
        if depth > MAX_DEPTH:
            raise ValueError(f"pickle nesting deeper than {MAX_DEPTH} levels")
        self.visits += 1
        if self.visits > MAX_VISITS:
            raise ValueError(f"pickle describes more than {MAX_VISITS} objects")
        result = self._convert(value, depth)
        self.memo[key] = result
        self.keep.append(value)
        return result

    def _pairs(self, pairs: Any, depth: int) -> dict[Any, Any]:
        result = {}
        for key, item in pairs:
            check_key(key)
            result[key] = self(item, depth)
        return result

    def _convert(self, value: Any, depth: int) -> Any:
        inner = depth + 1
        if isinstance(value, (list, tuple)):
            items = [self(item, inner) for item in value]
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, dict):
            return {key: self(item, inner) for key, item in value.items()}
        module, name = value.module, value.name
        if module == "torch._utils" and name in _TENSOR_BUILDERS:
            return _tensor(value.args)
        if module == "torch._utils" and name in _PARAMETER_BUILDERS and value.args:
            tensor = self(value.args[0], inner)
            if isinstance(tensor, TensorRecord) and len(value.args) > 1:
                tensor.requires_grad = value.args[1] is True
            return tensor
        if module == "collections" and name == "OrderedDict":
            pairs = [item for item in value.items if isinstance(item, tuple) and len(item) == 2]
            return self._pairs(pairs, inner)
        if module == "torch.jit._pickle" and name in _LIST_BUILDERS and value.args:
            return self(value.args[0], inner)
        if module == "torch.jit._pickle" and name == "restore_type_tag" and value.args:
            return self(value.args[0], inner)
        if module.startswith("__torch__") or not value.called:
            return self._instance(value.qualname, value.state, inner)
        if module == "copyreg" and name == "_reconstructor" and value.args:
            cls = value.args[0]  # protocol 0/1 spelling of "an instance of cls"
            if isinstance(cls, type) and issubclass(cls, PickledObject):
                return self._instance(cls.qualname, value.state, inner)
        return value

    def _instance(self, qualname: str, state: Any, depth: int) -> ObjectRecord:
        """An object of a class the pickle names (never resolved) with its ``__dict__``."""
        if isinstance(state, tuple) and len(state) == 2:  # (__dict__, slot state)
            state = state[0]
        found = self(state, depth)
        return ObjectRecord(qualname, found if isinstance(found, dict) else {})


def interpret(value: Any, depth: int = 0) -> Any:
    """Map PyTorch's pickle records to plain values (tensors, dicts, lists, objects)."""
    return _Interpreter()(value, depth)


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _tensor(args: tuple) -> TensorRecord | None:
    if len(args) < 4 or not isinstance(args[0], StorageRef):
        return None
    offset, size, stride = args[1], args[2], args[3]
    if not isinstance(size, tuple) or not isinstance(stride, tuple):
        return None
    if not (_is_index(offset) and all(map(_is_index, (*size, *stride)))):
        bad = next(
            (v for v in (offset, *size, *stride) if not _is_index(v)), offset
        )  # one element, described in O(1)
        raise ValueError(f"tensor layout is not non-negative integers: it holds {describe(bad)}")
    requires_grad = args[4] is True if len(args) > 4 else False
    return TensorRecord(args[0], offset, size, stride, requires_grad)
