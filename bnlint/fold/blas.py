"""One BLAS thread while bnlint evaluates regions.

The verification levels run many small float64 matrix products (a Conv on a probe of a few
positions is a 64 x 4608 by 4608 x 512 product). OpenBLAS splits each over all cores and its
threads wait for work by spinning: when other processes share the cores, a product that
takes 0.04 s on one thread took 0.57 s on two (measured on a loaded two-core machine), and
``bnlint fold`` of ResNet-50 varied between 2 and 6 s from run to run. One thread is never
much slower for these sizes, so the evaluation asks for one and gives the old count back.

Only NumPy's own OpenBLAS is touched, through its exported ``*set_num_threads*`` entry,
and only when that library is already loaded (``RTLD_NOLOAD``: nothing new is loaded).
``OPENBLAS_NUM_THREADS`` set by the user wins. Anything unexpected (another BLAS, a
missing symbol) leaves the threads as they are.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_PREFIXES = ("scipy_openblas_", "openblas_")
_SUFFIXES = ("64_", "_64_", "")
_LOCK = threading.Lock()
_UNSET = object()
_entries: object = _UNSET


def _library_entries() -> tuple[object, object] | None:
    """(get, set) of NumPy's bundled OpenBLAS, or None."""
    import numpy

    libs = Path(numpy.__file__).resolve().parent.parent / "numpy.libs"
    candidates = sorted(libs.glob("lib*openblas*.so*")) if libs.is_dir() else []
    mode = getattr(os, "RTLD_NOLOAD", None)
    if mode is None:
        return None
    for path in candidates:
        try:
            library = ctypes.CDLL(str(path), mode=mode | ctypes.RTLD_LOCAL)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                get = getattr(library, f"{prefix}get_num_threads{suffix}", None)
                put = getattr(library, f"{prefix}set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    get.restype, get.argtypes = ctypes.c_int, []
                    put.restype, put.argtypes = None, [ctypes.c_int]
                    return get, put
    return None


def _entries_once() -> tuple[object, object] | None:
    global _entries
    if _entries is _UNSET:
        try:
            _entries = _library_entries()
        except Exception:  # any surprise: leave BLAS alone
            _entries = None
    return _entries  # type: ignore[return-value]


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the body with one OpenBLAS thread (see the module docstring)."""
    if os.environ.get("OPENBLAS_NUM_THREADS") or not _LOCK.acquire(blocking=False):
        yield  # the user chose a count, or another thread is already inside
        return
    try:
        entries = _entries_once()
        before = None
        if entries is not None:
            get, put = entries
            before = get()  # type: ignore[operator]
            if before > 1:
                put(1)  # type: ignore[operator]
        try:
            yield
        finally:
            if entries is not None and before is not None and before > 1:
                entries[1](before)  # type: ignore[index]
    finally:
        _LOCK.release()
