"""A restricted unpickler that builds inert records and never imports or calls anything.

``pickle`` turns GLOBAL opcodes into ``find_class(module, name)`` and REDUCE/NEWOBJ/BUILD
into calls on what it returned. Here ``find_class`` returns a fresh subclass of
:class:`PickledObject` named after the global, whose construction only stores its
arguments and whose ``__setstate__`` only stores the state; REDUCE and NEWOBJ refuse to
call anything else. So a malicious pickle (``os.system``, ``builtins.exec``, a TorchScript
``__setstate__``) describes its payload instead of running it
(:mod:`bnlint.loaders.torch_pickle` then maps the records PyTorch writes to plain values).

Resources are bounded while the stream is read, not afterwards:

- every opcode is charged an estimate of the memory it allocates (a set costs more than an
  integer; a string costs its bytes, which the stream holds) before it runs, against
  :data:`MAX_PICKLE_MEMORY`: a stream of a million ``EMPTY_SET`` opcodes stops at the
  budget instead of building the sets first;
- MARK nesting is limited; a ``BYTEARRAY8`` may not declare more bytes than the stream has;
- nothing unbounded is hashed: a dict key or set member must be a scalar or a tuple of
  at most :data:`MAX_KEY_ELEMENTS` elements counted *with* repetition (a tuple shared
  twice at each of 64 levels has 2**64 of them, which ``hash`` would visit);
- nothing from the pickle is ever ``repr``-ed: errors describe values with
  :func:`describe`, which is O(1).

The base class is the pure-Python ``pickle._Unpickler``: its memo is a dict, where the C
unpickler's is an array a single ``LONG_BINPUT 2**30`` would grow to gigabytes.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from typing import Any, ClassVar

from bnlint.loaders.torch_archive import DTYPE_BY_STORAGE

MAX_PICKLE_MEMORY = 128 * 1024**2  # estimated bytes of objects one pickle may build
MAX_MARK_DEPTH = 10_000
MAX_KEY_ELEMENTS = 1_000

# Estimated bytes each opcode allocates (CPython 3.11, 64-bit): an object and its stack
# slot, memo entries, container growth. Every opcode not listed costs _BASE_COST; strings
# and bytes are charged as the stream's own size up front (they are copies of it).
_BASE_COST = 32
_COSTS = {
    pickle.EMPTY_SET: 232,
    pickle.FROZENSET: 232,
    pickle.ADDITEMS: 64,
    pickle.EMPTY_DICT: 80,
    pickle.DICT: 80,
    pickle.SETITEM: 48,
    pickle.SETITEMS: 48,
    pickle.EMPTY_LIST: 64,
    pickle.LIST: 64,
    pickle.MARK: 64,
    pickle.TUPLE: 64,
    pickle.TUPLE1: 56,
    pickle.TUPLE2: 64,
    pickle.TUPLE3: 72,
    pickle.NEWOBJ: 256,
    pickle.NEWOBJ_EX: 256,
    pickle.REDUCE: 256,
    pickle.OBJ: 256,
    pickle.INST: 256,
    pickle.BUILD: 64,
    pickle.MEMOIZE: 96,
    pickle.PUT: 96,
    pickle.BINPUT: 96,
    pickle.LONG_BINPUT: 96,
    pickle.BINPERSID: 96,
    pickle.PERSID: 96,
}
_OPCODE_COSTS = [_COSTS.get(bytes([code]), _BASE_COST) for code in range(256)]
_CLASS_COST = 1200  # a new Pickled subclass per distinct global
_SCALARS = (str, bytes, int, float, bool, type(None))


class UnsafePickle(pickle.UnpicklingError):
    """The stream exceeds a resource bound or asks for something the reader refuses."""


class PickledObject:
    """Stands for an object the pickle describes; nothing is imported or executed."""

    __slots__ = ("args", "called", "items", "kwargs", "state")
    module = ""
    name = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledObject:
        record = super().__new__(cls)
        record.args, record.kwargs, record.state, record.items = args, kwargs, None, []
        record.called = False  # NEWOBJ: an instance of the class, made without calling it
        return record

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.called = True  # REDUCE: the result of calling the global with these arguments

    def __setstate__(self, state: Any) -> None:
        self.state = state

    # APPENDS / SETITEMS on a reconstructed list- or dict-like object (never hashed)
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


@dataclass(frozen=True, slots=True)
class StorageRef:
    """A persistent id: ``('storage', <storage class>, key, device, numel)``."""

    key: str
    dtype: str | None
    numel: int | None


def describe(value: Any) -> str:
    """A short description of a pickled value in O(1): never its ``repr``."""
    if isinstance(value, PickledObject):
        return f"an instance of {value.qualname[:120]}"
    if isinstance(value, type) and issubclass(value, PickledObject):
        return f"the global {value.qualname[:120]}"
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, (str, bytes)):
        return f"a {type(value).__name__} of length {len(value)}"
    if isinstance(value, (int, float, bool)) or value is None:
        return repr(value)[:40]
    return f"a {type(value).__name__}"


def check_key(value: Any) -> None:
    """Refuse a dict key or set member whose hash would visit more than a bounded number
    of elements (counted with repetition: sharing does not make hashing cheaper)."""
    if isinstance(value, (*_SCALARS, PickledObject)):
        return
    budget = MAX_KEY_ELEMENTS
    pending = [value]
    while pending:
        item = pending.pop()
        budget -= 1
        if budget < 0:
            raise UnsafePickle(
                f"a dict key or set member holds more than {MAX_KEY_ELEMENTS} elements"
            )
        if isinstance(item, tuple):
            pending.extend(item)
        elif not isinstance(item, (*_SCALARS, PickledObject)):
            raise UnsafePickle(f"a dict key or set member holds {describe(item)}")


class RestrictedUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, data: bytes | io.BufferedIOBase, budget: int | None = None) -> None:
        self._size = len(data) if isinstance(data, bytes) else None
        super().__init__(io.BytesIO(data) if isinstance(data, bytes) else data)
        self._classes: dict[tuple[str, str], type[PickledObject]] = {}
        self.storages: list[StorageRef] = []  # every storage the pickle references
        self.budget = MAX_PICKLE_MEMORY if budget is None else budget
        self.spent = 0

    def spend(self, cost: int) -> None:
        self.spent += cost
        if self.spent > self.budget:
            raise UnsafePickle(
                f"the pickle would build more than {self.budget // 1024**2} MiB of objects"
            )

    def find_class(self, module: str, name: str) -> type[PickledObject]:
        module = "builtins" if module == "__builtin__" else module  # protocol 2 spelling
        key = (str(module), str(name))
        if key not in self._classes:
            self.spend(_CLASS_COST)
            self._classes[key] = type(
                "Pickled", (PickledObject,), {"module": key[0], "name": key[1], "__slots__": ()}
            )
        return self._classes[key]

    def load(self) -> Any:
        """As ``pickle.Unpickler.load``, charging each opcode before it runs; whatever a
        malformed stream makes the pure-Python unpickler raise (``struct.error`` on a
        truncated opcode, ``IndexError`` on an empty stack …) becomes ``UnpicklingError``."""
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)  # type: ignore[attr-defined]
        self.read = self._unframer.read
        if self._size is not None:
            self.spend(self._size)  # strings and bytes are copies of the stream
        else:  # a stream of unknown length: charge every multi-byte read as it happens
            self.read = self._charged(self._unframer.read)
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack: list[list[Any]] = []
        self.stack: list[Any] = []
        self.append = self.stack.append
        self.proto = 0
        read, dispatch, costs = self.read, self.dispatch, _OPCODE_COSTS
        try:
            while True:
                key = read(1)
                if not key:
                    raise EOFError
                code = key[0]
                self.spent += costs[code]
                if self.spent > self.budget:
                    self.spend(0)
                dispatch[code](self)
        except pickle._Stop as stop:  # type: ignore[attr-defined]
            return stop.value
        except (pickle.UnpicklingError, EOFError, MemoryError):
            raise
        except RecursionError:
            raise UnsafePickle("structure nested too deeply") from None
        except Exception as error:
            raise pickle.UnpicklingError(f"{type(error).__name__}: {_message(error)}") from None

    def _charged(self, read: Any) -> Any:
        def charged(size: int) -> bytes:
            data = read(size)
            if size > 8:
                self.spend(len(data))
            return data

        return charged

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            if not isinstance(pid[2], str) or len(pid[2]) > 256:
                raise UnsafePickle(f"a storage key is {describe(pid[2])}, not a short string")
            name = getattr(pid[1], "name", None)
            numel = pid[4] if isinstance(pid[4], int) and not isinstance(pid[4], bool) else None
            ref = StorageRef(
                pid[2], DTYPE_BY_STORAGE.get(name if isinstance(name, str) else ""), numel
            )
            self.storages.append(ref)
            return ref
        return pid

    # -- opcodes that would hash, call, grow or allocate without a bound -----------------
    def load_mark(self) -> None:
        if len(self.metastack) >= MAX_MARK_DEPTH:
            raise UnsafePickle(f"MARKs nested deeper than {MAX_MARK_DEPTH}")
        super().load_mark()

    def load_setitem(self) -> None:
        if not isinstance(self.stack[-3], PickledObject):
            check_key(self.stack[-2])
        super().load_setitem()

    def load_setitems(self) -> None:
        if not isinstance(self.metastack[-1][-1], PickledObject):
            for key in self.stack[::2]:
                check_key(key)
        super().load_setitems()

    def load_dict(self) -> None:
        for key in self.stack[::2]:
            check_key(key)
        super().load_dict()

    def load_additems(self) -> None:
        for item in self.stack:
            check_key(item)
        super().load_additems()

    def load_frozenset(self) -> None:
        for item in self.stack:
            check_key(item)
        super().load_frozenset()

    def load_build(self) -> None:
        if not isinstance(self.stack[-2], PickledObject):
            raise UnsafePickle(f"BUILD sets the state of {describe(self.stack[-2])}")
        super().load_build()

    def load_reduce(self) -> None:
        _callable(self.stack[-2], "REDUCE")
        super().load_reduce()

    def load_newobj(self) -> None:
        _callable(self.stack[-2], "NEWOBJ")
        super().load_newobj()

    def load_newobj_ex(self) -> None:
        _callable(self.stack[-3], "NEWOBJ_EX")
        super().load_newobj_ex()

    def load_obj(self) -> None:
        _callable(self.stack[0] if self.stack else None, "OBJ")
        super().load_obj()

    def load_proto(self) -> None:
        self.proto = self.read(1)[0]  # any number, as torch's reader: the opcodes decide

    def load_bytearray8(self) -> None:
        raise UnsafePickle("BYTEARRAY8 (out-of-band buffers) is not used by PyTorch files")

    dispatch[pickle.MARK[0]] = load_mark
    dispatch[pickle.SETITEM[0]] = load_setitem
    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.DICT[0]] = load_dict
    dispatch[pickle.ADDITEMS[0]] = load_additems
    dispatch[pickle.FROZENSET[0]] = load_frozenset
    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.REDUCE[0]] = load_reduce
    dispatch[pickle.NEWOBJ[0]] = load_newobj
    dispatch[pickle.NEWOBJ_EX[0]] = load_newobj_ex
    dispatch[pickle.OBJ[0]] = load_obj
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8
    dispatch[pickle.PROTO[0]] = load_proto


def _callable(value: Any, opcode: str) -> None:
    if not (isinstance(value, type) and issubclass(value, PickledObject)):
        raise UnsafePickle(f"{opcode} would call {describe(value)}")


def _message(error: BaseException) -> str:
    return " ".join(str(error).split())[:200]


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` into inert records (raises ``pickle.UnpicklingError`` and friends)."""
    return RestrictedUnpickler(data).load()
