"""A restricted unpickler that builds inert records and never imports or calls anything.

``pickle`` turns GLOBAL opcodes into ``find_class(module, name)`` and REDUCE/NEWOBJ/BUILD
into calls on what it returned. Here ``find_class`` returns a fresh subclass of
:class:`PickledObject` named after the global, whose construction only stores its
arguments and whose ``__setstate__`` only stores the state. So a malicious pickle
(``os.system``, ``builtins.exec``, a TorchScript ``__setstate__``) describes its payload
instead of running it. :func:`interpret` then maps the records PyTorch writes
(``_rebuild_tensor_v2``, ``OrderedDict``, ``build_intlist``, ``__torch__`` modules) to
plain Python values.

The base class is the pure-Python ``pickle._Unpickler``: its memo is a dict, where the C
unpickler's is an array a single ``LONG_BINPUT 2**30`` would grow to gigabytes.
:func:`interpret` visits each shared object once, so a pickle that references one list
from two places at each of 60 levels costs 60 steps, not 2**60.
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


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    def __init__(self, data: bytes | io.BufferedIOBase) -> None:
        super().__init__(io.BytesIO(data) if isinstance(data, bytes) else data)
        self._classes: dict[tuple[str, str], type[PickledObject]] = {}
        self.storages: list[StorageRef] = []  # every storage the pickle references

    def find_class(self, module: str, name: str) -> type[PickledObject]:
        module = "builtins" if module == "__builtin__" else module  # protocol 2 spelling
        key = (str(module), str(name))
        if key not in self._classes:
            self._classes[key] = type(
                "Pickled", (PickledObject,), {"module": key[0], "name": key[1], "__slots__": ()}
            )
        return self._classes[key]

    def load(self) -> Any:
        """As ``pickle.Unpickler.load``; whatever a malformed stream makes the pure-Python
        unpickler raise (``struct.error`` on a truncated opcode, ``IndexError`` on an empty
        stack …) becomes ``UnpicklingError``."""
        try:
            return super().load()
        except (pickle.UnpicklingError, EOFError, MemoryError):
            raise
        except Exception as error:
            raise pickle.UnpicklingError(f"{type(error).__name__}: {error}") from None

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage_class = pid[1]
            name = getattr(storage_class, "name", None)
            numel = pid[4] if isinstance(pid[4], int) else None
            ref = StorageRef(str(pid[2]), DTYPE_BY_STORAGE.get(str(name)), numel)
            self.storages.append(ref)
            return ref
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


MAX_DEPTH = 200
MAX_VISITS = 5_000_000


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
        if module == "torch._utils" and name == "_rebuild_parameter" and value.args:
            tensor = self(value.args[0], inner)
            if isinstance(tensor, TensorRecord) and len(value.args) > 1:
                tensor.requires_grad = bool(value.args[1])
            return tensor
        if module == "collections" and name == "OrderedDict":
            return {key: self(item, inner) for key, item in value.items}
        if module == "torch.jit._pickle" and name in _LIST_BUILDERS and value.args:
            return self(value.args[0], inner)
        if module == "torch.jit._pickle" and name == "restore_type_tag" and value.args:
            return self(value.args[0], inner)
        if module.startswith("__torch__"):
            state = self(value.state, inner)
            return ObjectRecord(value.qualname, state if isinstance(state, dict) else {})
        return value


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
        raise ValueError(f"tensor layout is not non-negative integers: {size!r}, {stride!r}")
    requires_grad = bool(args[4]) if len(args) > 4 and isinstance(args[4], bool) else False
    return TensorRecord(args[0], offset, size, stride, requires_grad)
