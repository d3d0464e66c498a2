"""A restricted unpickler that builds inert records and never imports or calls anything.

``pickle`` turns GLOBAL opcodes into ``find_class(module, name)`` and REDUCE/NEWOBJ/BUILD
into calls on what it returned. Here ``find_class`` returns a fresh subclass of
:class:`PickledObject` named after the global, whose construction only stores its
arguments and whose ``__setstate__`` only stores the state. So a malicious pickle
(``os.system``, ``builtins.exec``, a TorchScript ``__setstate__``) describes its payload
instead of running it. :func:`interpret` then maps the records PyTorch writes
(``_rebuild_tensor_v2``, ``OrderedDict``, ``build_intlist``, ``__torch__`` modules) to
plain Python values.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from typing import Any

from bnlint.loaders.torch_archive import DTYPE_BY_STORAGE


class PickledObject:
    """Stands for an object the pickle describes; nothing is imported or executed."""

    module = ""
    name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledObject:
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None
        self.items: list[Any] = []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    # APPENDS / SETITEMS on a reconstructed list- or dict-like object
    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}" if self.module else self.name

    def __repr__(self) -> str:
        return f"<pickled {self.qualname}>"


@dataclass(frozen=True)
class StorageRef:
    """A persistent id: ``('storage', <storage class>, key, device, numel)``."""

    key: str
    dtype: str | None
    numel: int | None


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


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self._classes: dict[tuple[str, str], type[PickledObject]] = {}

    def find_class(self, module: str, name: str) -> type[PickledObject]:
        module = "builtins" if module == "__builtin__" else module  # protocol 2 spelling
        key = (str(module), str(name))
        if key not in self._classes:
            self._classes[key] = type(
                "Pickled", (PickledObject,), {"module": key[0], "name": key[1], "__slots__": ()}
            )
        return self._classes[key]

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage_class = pid[1]
            name = getattr(storage_class, "name", None)
            numel = pid[4] if isinstance(pid[4], int) else None
            return StorageRef(str(pid[2]), DTYPE_BY_STORAGE.get(str(name)), numel)
        return pid


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` into inert records (raises ``pickle.UnpicklingError`` and friends)."""
    return RestrictedUnpickler(data).load()


_TENSOR_BUILDERS = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3"}
_LIST_BUILDERS = {
    "build_intlist",
    "build_doublelist",
    "build_boollist",
    "build_tensorlist",
    "build_complexlist",
}


def interpret(value: Any, depth: int = 0) -> Any:
    """Map PyTorch's pickle records to plain values (tensors, dicts, lists, objects)."""
    if depth > 200:
        raise ValueError("pickle nesting deeper than 200 levels")
    if isinstance(value, (list, tuple)):
        items = [interpret(item, depth + 1) for item in value]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {key: interpret(item, depth + 1) for key, item in value.items()}
    if not isinstance(value, PickledObject):
        return value
    module, name = value.module, value.name
    if module == "torch._utils" and name in _TENSOR_BUILDERS:
        return _tensor(value.args)
    if module == "torch._utils" and name == "_rebuild_parameter" and value.args:
        tensor = interpret(value.args[0], depth + 1)
        if isinstance(tensor, TensorRecord) and len(value.args) > 1:
            tensor.requires_grad = bool(value.args[1])
        return tensor
    if module == "collections" and name == "OrderedDict":
        return {key: interpret(item, depth + 1) for key, item in value.items}
    if module == "torch.jit._pickle" and name in _LIST_BUILDERS and value.args:
        return interpret(value.args[0], depth + 1)
    if module == "torch.jit._pickle" and name == "restore_type_tag" and value.args:
        return interpret(value.args[0], depth + 1)
    if module.startswith("__torch__"):
        state = interpret(value.state, depth + 1)
        return ObjectRecord(value.qualname, state if isinstance(state, dict) else {})
    return value


def _tensor(args: tuple) -> TensorRecord | None:
    if len(args) < 4 or not isinstance(args[0], StorageRef):
        return None
    size, stride = args[2], args[3]
    if not isinstance(size, tuple) or not isinstance(stride, tuple):
        return None
    requires_grad = bool(args[4]) if len(args) > 4 and isinstance(args[4], bool) else False
    return TensorRecord(args[0], int(args[1]), tuple(size), tuple(stride), requires_grad)
