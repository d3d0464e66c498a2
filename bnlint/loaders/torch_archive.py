"""Reading PyTorch zip archives without PyTorch: members, sizes, and tensors as NumPy.

Shared by the ``.pt2`` and TorchScript readers. Nothing here unpickles or executes:
tensors are raw little-endian bytes laid out by (sizes, strides, storage offset).
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from bnlint.loaders import LoadError

MAX_JSON_BYTES = 1024**3  # a program description larger than this is not a model we read
_BOMB_MIN_BYTES = 64 * 1024**2
_BOMB_RATIO = 200  # torch stores members uncompressed; this ratio only comes from crafting

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
    if len(sizes) != len(strides) or any(s < 0 for s in sizes) or any(s < 0 for s in strides):
        raise ValueError(f"invalid tensor layout sizes={list(sizes)} strides={list(strides)}")
    count = len(raw) // dtype.itemsize
    if all(sizes):
        last = offset + sum(
            (size - 1) * stride for size, stride in zip(sizes, strides, strict=True)
        )
        if offset < 0 or last >= count:
            raise ValueError(
                f"tensor of shape {tuple(sizes)} needs element {last} but the storage holds {count}"
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
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise LoadError(path, f"not a readable zip archive: {error}") from None
        prefixes = {name.split("/", 1)[0] for name in self.infos if "/" in name}
        self.prefix = sorted(prefixes)[0] if len(prefixes) == 1 else None
        if self.prefix is None:
            for name in self.infos:  # torch writes one folder; tolerate stray extra files
                if name.endswith(("/data.pkl", "/archive_format", "/version")):
                    self.prefix = name.split("/", 1)[0]
                    break

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

    def read(self, relative: str, limit: int = MAX_JSON_BYTES) -> bytes:
        name = self.member(relative)
        info = self.infos.get(name)
        if info is None:
            raise LoadError(self.path, f"archive member {name!r} is missing")
        if info.file_size > limit:
            raise LoadError(
                self.path, f"archive member {name!r} is {info.file_size} bytes (limit {limit})"
            )
        if info.file_size > _BOMB_MIN_BYTES and info.file_size > _BOMB_RATIO * info.compress_size:
            raise LoadError(
                self.path,
                f"archive member {name!r} expands {info.compress_size} bytes to "
                f"{info.file_size}: refusing a likely zip bomb",
            )
        try:
            with zipfile.ZipFile(self.path) as archive, archive.open(info) as handle:
                data = handle.read(limit + 1)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
            raise LoadError(self.path, f"cannot read archive member {name!r}: {error}") from None
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
    ) -> Callable[[], np.ndarray]:
        """A zero-argument loader for one tensor stored in ``relative`` (read on demand)."""
        sizes, strides = tuple(sizes), tuple(strides)
        dtype = numpy_dtype(dtype_name)
        itemsize = dtype.itemsize if dtype is not None else 1
        needed = offset + 1 + sum((n - 1) * s for n, s in zip(sizes, strides, strict=False))
        limit = max(needed * itemsize, 0) if all(sizes) else 0

        def load() -> np.ndarray:
            if relative and self.has(relative) and self.size(relative) < limit:
                raise ValueError(
                    f"{self.member(relative)} holds {self.size(relative)} bytes, "
                    f"fewer than the {limit} its tensor of shape {sizes} needs"
                )
            raw = self.read(relative, limit=max(self.size(relative), 0)) if relative else b""
            return strided_array(raw, dtype_name, sizes, strides, offset, big_endian)

        return load
