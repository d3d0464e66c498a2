"""ONNX external data: validate every location before any read, then read lazily.

A location may only name a regular file inside the model's folder, or a symlink that
resolves inside it, inside the same Hugging Face cache repository (``models--*/blobs``),
or inside a configured ``allowed-data-roots`` folder. The byte range must lie inside the
file and match the tensor's declared size. Reads are memory-mapped, so a linter that
needs a few BN vectors of a multi-GB model reads a few KB.
"""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from bnlint.graph import UnreadableParameter
from bnlint.loaders.files import LoadError


@dataclass(frozen=True)
class ExternalRef:
    file: Path
    offset: int
    length: int


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def _real_directory(path: Path) -> bool:
    """A directory itself, not a symlink to one (``lstat``)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _hf_blobs_root(model_dir: Path) -> Path | None:
    """``.../models--org--name/blobs`` when the model sits in a Hugging Face snapshot.

    Only a real cache layout counts: the model below ``models--*/snapshots/``, and both
    ``models--*`` and its ``blobs`` real directories. A folder that merely names itself like
    a cache — ``models--x/blobs -> /`` shipped beside a model — would otherwise make any
    file on the machine "inside the cache".
    """
    folder = model_dir.resolve()  # every component real: a symlinked models--* has no such name
    for parent in (folder, *folder.parents):
        if not parent.name.startswith("models--"):
            continue
        snapshots, blobs = parent / "snapshots", parent / "blobs"
        if folder == snapshots or not _inside(folder, snapshots) or not _real_directory(blobs):
            return None
        return blobs
    return None


def leaves_folder(path: Path, root: Path) -> bool:
    """Whether ``path``, found by walking ``root``, is a symlink to a file outside it (a
    Hugging Face snapshot's link into its own ``blobs`` excepted). A folder walk does not
    read those: a shipped ``x.onnxtxt -> /proc/self/environ`` is not the folder's model."""
    if not path.is_symlink():
        return False
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False  # broken or looping: the loader refuses it with one line
    if _inside(real, root.resolve()):
        return False
    blobs = _hf_blobs_root(path.parent)
    return blobs is None or not _inside(real, blobs)


class ExternalDataResolver:
    """Validates external-data references of one model; caches ``stat`` per file."""

    def __init__(self, model_path: Path, allowed_roots: Sequence[str] = ()) -> None:
        self.model_path = model_path
        # Locations are relative to the folder the model is opened from (as onnx does), even
        # when the model file itself is a symlink into a cache's blob store.
        self.model_dir = model_path.absolute().parent
        self.roots = [self.model_dir.resolve()]
        blobs = _hf_blobs_root(self.model_dir)
        if blobs is not None:
            self.roots.append(blobs)
        self.roots += [Path(root).resolve() for root in allowed_roots]
        self._sizes: dict[Path, int] = {}

    @property
    def files(self) -> list[str]:
        """Every external-data file validated so far (resolved paths)."""
        return sorted(str(path) for path in self._sizes)

    def _fail(self, tensor: str, location: str, problem: str) -> LoadError:
        return LoadError(
            self.model_path, f"external data of tensor {tensor!r} at {location!r}: {problem}"
        )

    def resolve(self, tensor: str, entries: dict[str, str], nbytes: int | None) -> ExternalRef:
        if not all(type(k) is str and type(v) is str for k, v in entries.items()):
            # protobuf hands back bytes for a string field that is not valid UTF-8
            raise self._fail(tensor, str(entries.get("location")), "entries are not UTF-8 text")
        location = entries.get("location", "")
        if not location:
            raise self._fail(tensor, location, "no location given")
        if "\x00" in location:
            raise self._fail(tensor, location, "location contains a NUL byte")
        posix, windows = PurePosixPath(location), PureWindowsPath(location)
        if posix.is_absolute() or windows.is_absolute() or windows.drive:
            raise self._fail(tensor, location, "absolute paths are not allowed")
        if ".." in posix.parts or ".." in windows.parts:
            raise self._fail(tensor, location, "'..' leaves the model's folder")
        candidate = self.model_dir / location
        try:
            real = candidate.resolve(strict=True)
        except FileNotFoundError:
            raise self._fail(tensor, location, "file not found") from None
        except (OSError, RuntimeError) as error:
            raise self._fail(tensor, location, f"cannot resolve: {error}") from None
        if not any(_inside(real, root) for root in self.roots):
            raise self._fail(tensor, location, "resolves outside the model's folder")
        size = self._file_size(tensor, location, real)
        try:
            offset = int(entries.get("offset", "0") or 0)
            length = int(entries["length"]) if entries.get("length") else None
        except ValueError:
            raise self._fail(tensor, location, "offset or length is not an integer") from None
        if offset < 0 or (length is not None and length < 0):
            raise self._fail(tensor, location, "negative offset or length")
        if length is None:
            length = size - offset if nbytes is None else nbytes
        if nbytes is not None and length != nbytes:
            raise self._fail(
                tensor, location, f"length {length} does not match the tensor's {nbytes} bytes"
            )
        if offset + length > size:
            raise self._fail(
                tensor, location, f"bytes {offset}..{offset + length} exceed the file's {size}"
            )
        return ExternalRef(real, offset, length)

    def _file_size(self, tensor: str, location: str, real: Path) -> int:
        if real not in self._sizes:
            try:
                info = os.stat(real)
            except OSError as error:
                raise self._fail(tensor, location, f"cannot stat: {error.strerror}") from None
            if not stat.S_ISREG(info.st_mode):
                raise self._fail(tensor, location, "not a regular file")
            if info.st_nlink > 1:
                raise self._fail(tensor, location, "file has several hard links; refusing it")
            self._sizes[real] = info.st_size
        return self._sizes[real]


def lazy_reader(
    ref: ExternalRef, dtype: np.dtype, shape: tuple[int, ...], tensor: str = ""
) -> Callable[[], np.ndarray]:
    """A loader that maps exactly the tensor's bytes when first called.

    The file is checked again when mapped: one that shrank since validation would make a
    read of the mapping past its end kill the process with SIGBUS.
    """

    def read() -> np.ndarray:
        if ref.length == 0:
            return np.zeros(shape, dtype=dtype)
        try:
            with open(ref.file, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode) or info.st_size < ref.offset + ref.length:
                    raise ValueError(f"{ref.file.name} changed since it was validated")
                start = ref.offset - ref.offset % mmap.ALLOCATIONGRANULARITY
                mapped = mmap.mmap(
                    handle.fileno(),
                    ref.offset + ref.length - start,
                    offset=start,
                    access=mmap.ACCESS_READ,
                )
            array = np.frombuffer(
                mapped, dtype=dtype, count=ref.length // dtype.itemsize, offset=ref.offset - start
            )
            return array.reshape(shape)
        except (OSError, ValueError) as error:
            raise UnreadableParameter(tensor or ref.file.name, f"external data: {error}") from None

    return read
