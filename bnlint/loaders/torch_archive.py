"""Reading PyTorch zip archives without PyTorch: members, sizes, and tensors as NumPy.

Shared by the ``.pt2`` and TorchScript readers. Nothing here unpickles or executes:
tensors are raw little-endian bytes laid out by (sizes, strides, storage offset). Every
size an archive declares is checked before anything is read or allocated: the central
directory against the file (zip bombs), each member against its limit, each tensor view
against its member.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bnlint.graph import UnreadableParameter
from bnlint.loaders.files import LoadError

MAX_JSON_BYTES = 256 * 1024**2  # a program description larger than this is not a model we read
# torch stores tensors uncompressed (code and debug info deflate about 3:1), so an archive
# that expands to 100 times its size, or to more than MAX_EXPANDED_BYTES, only comes from
# crafting; the floor keeps tiny archives of compressible text readable.
MAX_EXPANSION_RATIO = 100
EXPANSION_FLOOR_BYTES = 16 * 1024**2
# Members bnlint parses (pickles, JSON, code) grow in memory as they are parsed, and torch
# writes pickles and JSON uncompressed: past this floor they expand at most 100:1 either.
PARSED_FLOOR_BYTES = 1024**2
MAX_EXPANDED_BYTES = 1024**4
MAX_MEMBERS = 1_000_000
# A tensor view may repeat its storage (stride 0, e.g. an expanded tensor); copying it out
# is allowed while the copy stays this small, or no larger than the bytes it reads.
MAX_EXPANDED_TENSOR_BYTES = 64 * 1024**2

# torch.export's ScalarType enum (torch/_export/serde/schema.py) -> dtype name
DTYPE_BY_ENUM = {
    1: "uint8",
    2: "int8",
    3: "int16",
    4: "int32",
    5: "int64",
    6: "float16",
    7: "float32",
    8: "float64",
    12: "bool",
    13: "bfloat16",
    28: "uint16",
    34: "uint32",
    35: "uint64",
}
# TorchScript / torch.save storage classes -> dtype name
DTYPE_BY_STORAGE = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}

_NUMPY_NAMES = frozenset(
    {"bool", "uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64"}
    | {"float16", "float32", "float64"}
)


def numpy_dtype(name: str, big_endian: bool = False) -> np.dtype | None:
    """The NumPy dtype that holds a tensor of ``name`` on disk (bfloat16 as uint16)."""
    if name == "bfloat16":
        base = np.dtype(np.uint16)
    elif name in _NUMPY_NAMES:
        base = np.dtype(name)
    else:
        return None
    if base.itemsize == 1:
        return base
    return base.newbyteorder(">" if big_endian else "<")


def view_bytes(
    dtype: np.dtype, sizes: Sequence[int], strides: Sequence[int], offset: int
) -> tuple[int, int]:
    """(storage bytes a view reads, bytes its copy occupies); ValueError if it is invalid."""
    if len(sizes) != len(strides) or any(s < 0 for s in sizes) or any(s < 0 for s in strides):
        raise ValueError(f"invalid tensor layout sizes={list(sizes)} strides={list(strides)}")
    if offset < 0:
        raise ValueError(f"negative storage offset {offset}")
    numel = math.prod(sizes)
    if numel == 0:
        return 0, 0
    last = offset + sum((size - 1) * stride for size, stride in zip(sizes, strides, strict=True))
    return (last + 1) * dtype.itemsize, numel * dtype.itemsize


def strided_array(
    raw: bytes,
    dtype_name: str,
    sizes: Sequence[int],
    strides: Sequence[int],
    offset: int,
    big_endian: bool = False,
) -> np.ndarray:
    """A tensor view (sizes/strides/offset in elements) of a raw storage, copied out."""
    dtype = numpy_dtype(dtype_name, big_endian)
    if dtype is None:
        raise ValueError(f"unsupported dtype {dtype_name}")
    needed, copied = view_bytes(dtype, sizes, strides, offset)
    count = len(raw) // dtype.itemsize
    if needed > count * dtype.itemsize:
        raise ValueError(
            f"tensor of shape {tuple(sizes)} needs {needed} bytes but the storage holds "
            f"{count * dtype.itemsize}"
        )
    if copied > max(needed, MAX_EXPANDED_TENSOR_BYTES):
        raise ValueError(
            f"tensor of shape {tuple(sizes)} repeats {needed} stored bytes into {copied}; "
            "refusing to expand it"
        )
    storage = np.frombuffer(raw, dtype=dtype, count=count)
    view = np.lib.stride_tricks.as_strided(
        storage[offset:] if all(sizes) else storage[:0],
        shape=tuple(sizes),
        strides=tuple(s * dtype.itemsize for s in strides),
        writeable=False,
    )
    array = np.array(view, dtype=dtype.newbyteorder("=") if dtype.itemsize > 1 else dtype)
    if dtype_name == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


class ZipArchive:
    """A PyTorch zip archive: one top-level folder (the prefix) holding every member."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as archive:
                self.infos = {info.filename: info for info in archive.infolist()}
        except Exception as error:  # zipfile raises many types on crafted central directories
            raise LoadError(path, f"not a readable zip archive: {error}") from None
        self._check_expansion()
        prefixes = {name.split("/", 1)[0] for name in self.infos if "/" in name}
        self.prefix = sorted(prefixes)[0] if len(prefixes) == 1 else None
        if self.prefix is None:
            for name in self.infos:  # torch writes one folder; tolerate stray extra files
                if name.endswith(("/data.pkl", "/archive_format", "/version")):
                    self.prefix = name.split("/", 1)[0]
                    break

    def _check_expansion(self) -> None:
        """Refuse a zip bomb from its central directory, before reading any member."""
        if len(self.infos) > MAX_MEMBERS:
            raise LoadError(self.path, f"zip archive with {len(self.infos)} members")
        size = self.path.stat().st_size
        expanded = sum(info.file_size for info in self.infos.values())
        limit = min(max(MAX_EXPANSION_RATIO * size, EXPANSION_FLOOR_BYTES), MAX_EXPANDED_BYTES)
        if expanded > limit:
            raise LoadError(
                self.path,
                f"zip archive of {size} bytes declares {expanded} bytes of members "
                f"(over {MAX_EXPANSION_RATIO} times its size or {MAX_EXPANDED_BYTES}): "
                "refusing a likely zip bomb",
            )
        for info in self.infos.values():
            if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
                raise LoadError(
                    self.path,
                    f"archive member {info.filename!r} is stored uncompressed but declares "
                    f"{info.file_size} bytes in {info.compress_size}",
                )

    def member(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def has(self, relative: str) -> bool:
        return self.member(relative) in self.infos

    def names(self, under: str = "") -> list[str]:
        """Members below ``under`` (relative names, in archive order)."""
        start = self.member(under)
        cut = len(self.prefix) + 1 if self.prefix else 0
        return [name[cut:] for name in self.infos if name.startswith(start)]

    def size(self, relative: str) -> int:
        return self.infos[self.member(relative)].file_size

    def read(
        self, relative: str, limit: int = MAX_JSON_BYTES, floor: int = PARSED_FLOOR_BYTES
    ) -> bytes:
        """A member's bytes; ``floor``: the size above which it may not expand more than
        ``MAX_EXPANSION_RATIO`` times (low for what is parsed, high for raw tensors)."""
        name = self.member(relative)
        info = self.infos.get(name)
        if info is None:
            raise LoadError(self.path, f"archive member {name!r} is missing")
        if info.file_size > limit:
            raise LoadError(
                self.path, f"archive member {name!r} is {info.file_size} bytes (limit {limit})"
            )
        if info.file_size > floor and info.file_size > MAX_EXPANSION_RATIO * info.compress_size:
            raise LoadError(
                self.path,
                f"archive member {name!r} expands {info.compress_size} bytes to "
                f"{info.file_size}: refusing a likely zip bomb",
            )
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(info) as handle:
                data = handle.read(info.file_size + 1)
        except Exception as error:  # zlib.error, NotImplementedError, encrypted members …
            problem = f"{type(error).__name__}: {error}"
            raise LoadError(self.path, f"cannot read archive member {name!r}: {problem}") from None
        if len(data) != info.file_size:
            raise LoadError(self.path, f"archive member {name!r} is truncated or corrupt")
        return data

    def tensor_loader(
        self,
        relative: str,
        dtype_name: str,
        sizes: Sequence[int],
        strides: Sequence[int],
        offset: int,
        big_endian: bool = False,
        tensor: str | None = None,
    ) -> Callable[[], np.ndarray]:
        """A zero-argument loader for one tensor stored in ``relative`` (read on demand).

        Every size is checked against the member before a byte is read or allocated; any
        problem is an :class:`UnreadableParameter` naming ``tensor`` (BN901, not a crash).
        """
        sizes, strides = tuple(sizes), tuple(strides)
        name = tensor or relative

        def load() -> np.ndarray:
            try:
                dtype = numpy_dtype(dtype_name)
                if dtype is None:
                    raise ValueError(f"unsupported dtype {dtype_name}")
                needed, _ = view_bytes(dtype, sizes, strides, offset)
                stored = self.size(relative) if relative and self.has(relative) else 0
                if stored < needed:
                    raise ValueError(
                        f"{self.member(relative)} holds {stored} bytes, fewer than the "
                        f"{needed} its tensor of shape {sizes} needs"
                    )
                raw = self.read(relative, stored, EXPANSION_FLOOR_BYTES) if needed else b""
                return strided_array(raw, dtype_name, sizes, strides, offset, big_endian)
            except (ValueError, TypeError, OverflowError, LoadError) as error:
                problem = error.problem if isinstance(error, LoadError) else str(error)
                raise UnreadableParameter(name, problem) from None

        return load
