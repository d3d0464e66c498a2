"""Parameter arrays by tensor name, described cheaply and materialised only when asked for.

Loaders register parameters three ways: in bulk (a model's embedded initializers: one dict
update, each record described and decoded on first use), one lazy loader per tensor
(external data, checkpoint archives), or a ready array (evaluated constant plumbing).
Small arrays are cached once read; large ones are not (a memory-mapped multi-GB weight
would otherwise stay resident), and :meth:`ParamStore.row_blocks` reads a large tensor in
bounded blocks so a per-channel reduction never holds the whole tensor.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

# Arrays up to this size stay cached after a read; larger ones are re-read on demand.
CACHE_LIMIT_BYTES = 64 << 20
BLOCK_BYTES = 8 << 20  # the size of one block of row_blocks()

_DTYPE_NAMES: dict[np.dtype, str] = {}


def dtype_name(dtype: np.dtype) -> str:
    """``dtype.name``, memoised (the property formats a string on every call)."""
    name = _DTYPE_NAMES.get(dtype)
    if name is None:
        name = _DTYPE_NAMES[dtype] = dtype.name
    return name


class UnreadableParameter(Exception):
    """A parameter's data cannot be read (corrupt, truncated, inconsistent with its shape)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"tensor {name!r} {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True, slots=True)
class MappedTensor:
    """A stored tensor record (an ONNX TensorProto) whose raw bytes lie at ``offset`` in
    ``buffer`` (the memory-mapped model file): readable without another copy."""

    tensor: Any
    buffer: Any
    offset: int
    length: int


RowReader = Callable[[int, int], np.ndarray]  # (first row, stop row) -> those rows
RawFloats = tuple[str, Any, int]  # ("<f4", bytes-like, elements)
RawReader = Callable[[Any, int], "RawFloats | None"]  # (bulk record, max elements)


class ParamStore:
    """Parameter arrays by tensor name, materialised only when a rule asks for one."""

    def __init__(self) -> None:
        self._loaders: dict[str, Callable[[], np.ndarray]] = {}
        self._row_readers: dict[str, RowReader] = {}
        self._cache: dict[str, np.ndarray] = {}
        self._read: dict[str, None] = {}  # every name read so far, in order
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._dtypes: dict[str, str] = {}
        # Bulk sources (e.g. a model's initializers): name -> opaque record, described and
        # materialised on demand, so registering 60,000 tensors costs one dict update.
        self._sources: dict[str, Any] = {}
        self._describe: Callable[[Any], tuple[tuple[int, ...], str | None]] | None = None
        self._materialise: Callable[[Any], np.ndarray] | None = None
        self._raw: RawReader | None = None

    def add_sources(
        self,
        sources: dict[str, Any],
        describe: Callable[[Any], tuple[tuple[int, ...], str | None]],
        materialise: Callable[[Any], np.ndarray],
        raw_floats: RawReader | None = None,
    ) -> None:
        """Register many lazily described parameters at once (one describer per store);
        ``raw_floats`` gives a record's stored float bytes (see :meth:`raw_floats`)."""
        self._sources.update(sources)
        self._describe, self._materialise = describe, materialise
        if raw_floats is not None:
            self._raw = raw_floats

    def source(self, name: str) -> Any:
        """The opaque bulk record behind ``name`` (None for other kinds of parameter)."""
        return self._sources.get(name)

    def raw_floats(self, name: str, max_elements: int) -> RawFloats | None:
        """``(numpy dtype string, little-endian bytes, element count)`` of a float parameter
        whose stored bytes are all it holds and match its declared shape, without decoding
        (so many can be concatenated at once); None for anything else, or when it has more
        than ``max_elements`` elements. Only the front end knows a record's encoding."""
        source = self._sources.get(name)
        if source is None or self._raw is None:
            return None
        return self._raw(source, max_elements)

    def _described(self, name: str) -> bool:
        source = self._sources.get(name)
        if source is None or self._describe is None:
            return False
        shape, dtype = self._describe(source)
        self._shapes[name] = shape if type(shape) is tuple else tuple(shape)
        if dtype is not None:
            self._dtypes[name] = dtype
        return True

    def add(
        self,
        name: str,
        value: np.ndarray | Callable[[], np.ndarray],
        *,
        shape: tuple[int, ...] | None = None,
        dtype: str | None = None,
        rows: RowReader | None = None,
    ) -> None:
        """Register one parameter: an array, or a loader (``rows`` reads a range of rows)."""
        if isinstance(value, np.ndarray):
            self._cache[name] = value
            self._shapes[name] = tuple(value.shape)
            self._dtypes[name] = dtype_name(value.dtype)
        else:
            self._loaders[name] = value
            self._cache.pop(name, None)
            if shape is not None:
                self._shapes[name] = tuple(shape)
            if dtype is not None:
                self._dtypes[name] = dtype
        if rows is not None:
            self._row_readers[name] = rows

    def alias(self, name: str, source: str) -> None:
        """Register ``name`` as another name of parameter ``source`` (an Identity)."""
        read = partial(_read_alias, weakref.ref(self), source)
        self.add(name, read, shape=self.shape(source), dtype=self.dtype(source))

    def __contains__(self, name: object) -> bool:
        return name in self._sources or name in self._cache or name in self._loaders

    def __iter__(self) -> Iterator[str]:
        yield from self.names()

    def names(self) -> list[str]:
        return list(dict.fromkeys([*self._cache, *self._loaders, *self._sources]))

    def get(self, name: str) -> np.ndarray:
        """The array for ``name``; raises KeyError if it is not a parameter."""
        array = self._cache.get(name)
        if array is not None:
            return array
        if name in self._loaders:
            array = self._loaders[name]()
        elif name in self._sources and self._materialise is not None:
            array = self._materialise(self._sources[name])
        else:
            raise KeyError(name)
        if array.nbytes <= CACHE_LIMIT_BYTES:
            self._cache[name] = array
        self._read[name] = None
        self._shapes[name] = tuple(array.shape)
        # Keep the stored dtype (bfloat16 is decoded to float32 but stays bfloat16).
        if name not in self._dtypes:
            self._dtypes[name] = dtype_name(array.dtype)
        return array

    def row_blocks(self, name: str, block_bytes: int = BLOCK_BYTES) -> Iterator[np.ndarray]:
        """``name``'s array in consecutive blocks of rows (axis 0), each about
        ``block_bytes``; a tensor with a row reader is never held whole in memory."""
        reader = self._row_readers.get(name)
        shape = self.shape(name)
        if reader is None or shape is None or not shape or name in self._cache:
            array = self.get(name)
            if array.ndim == 0:
                yield array.reshape(1)
                return
            shape = array.shape
            reader = lambda start, stop: array[start:stop]  # noqa: E731
        self._read[name] = None
        row_bytes = max(int(np.prod(shape[1:], dtype=np.int64)), 1) * 8
        step = max(1, block_bytes // row_bytes)
        for start in range(0, shape[0], step):
            yield reader(start, min(start + step, shape[0]))

    def shape(self, name: str) -> tuple[int, ...] | None:
        shape = self._shapes.get(name)
        if shape is None:
            source = self._sources.get(name)
            if source is not None and self._describe is not None:
                self._described(name)
                shape = self._shapes.get(name)
        return shape

    def dtype(self, name: str) -> str | None:
        dtype = self._dtypes.get(name)
        if dtype is None and name in self._sources and name not in self._shapes:
            self._described(name)
            dtype = self._dtypes.get(name)
        return dtype

    def loaded_names(self) -> list[str]:
        """Every parameter read so far (cached or not), in the order first read."""
        return [*self._read, *(name for name in self._cache if name not in self._read)]


def _read_alias(store: weakref.ref[ParamStore], source: str) -> np.ndarray:
    # Weakly bound: a store holding a closure over itself is freed only by a full garbage
    # collection, so linting model after model would keep every model's weights alive.
    return store().get(source)
