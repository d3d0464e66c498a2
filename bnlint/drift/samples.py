"""The ``--sample-data`` file: ``.npz`` (one array per model input) or ``.npy`` (one input).

The file is data from the user's pipeline, read like any other untrusted input:

* nothing is unpickled (``allow_pickle`` stays off): an object array, a structured dtype
  or a zip member that is not an ``.npy`` array is refused, never loaded;
* every size is checked before anything is allocated: the ``.npy`` header (parsed by
  NumPy's literal parser, bounded to 10,000 bytes) must declare exactly the bytes the file
  or zip member holds, one sample may not exceed :data:`MAX_SAMPLE_BYTES`, a zip member may
  not declare more than DEFLATE can expand its compressed bytes to;
* samples are streamed in batches (``readinto`` a batch buffer), so memory does not grow
  with the number of samples, and each batch is checked for NaN and infinity before use.

Problems raise :class:`SampleDataError`, whose message starts with the file's path.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from bnlint.rule import RuleInputError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
MAX_HEADER_BYTES = 10_000
MAX_SAMPLE_BYTES = 1 << 30  # one sample of one input
MAX_MEMBERS = 1024
MAX_FORTRAN_BYTES = 1 << 31  # a Fortran-ordered array is read whole (its rows are strided)
DEFLATE_MAX_RATIO = 1032  # DEFLATE cannot expand more than this (RFC 1951 worst case)
NUMERIC_KINDS = "biuf"


class SampleDataError(RuleInputError):
    """The sample file cannot be used; ``str()`` is one line naming the file."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class SampleArray:
    """One array of the file: its key, per-sample shape, dtype and where its bytes start."""

    key: str
    count: int
    shape: tuple[int, ...]  # one sample
    dtype: np.dtype
    fortran: bool
    member: str | None  # zip member name; None for a .npy file
    offset: int  # data offset in the file or member

    @property
    def sample_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class InputSpec:
    """What the model expects: input name, shape with the batch axis first, dtype name."""

    name: str
    shape: tuple[Any, ...] | None
    dtype: str | None


def _header(stream: IO[bytes], where: str, path: Path) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            header = np.lib.format.read_array_header_1_0(stream, MAX_HEADER_BYTES)
        elif version in ((2, 0), (3, 0)):
            header = np.lib.format.read_array_header_2_0(stream, MAX_HEADER_BYTES)
        else:
            raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, SyntaxError, TypeError, OSError, EOFError) as error:
        detail = " ".join(str(error).split())[:200]
        raise SampleDataError(path, f"{where} is not a valid .npy array ({detail})") from None
    shape, fortran, dtype = header
    if dtype.hasobject:
        raise SampleDataError(
            path,
            f"{where} holds pickled Python objects; bnlint never unpickles sample data "
            "(allow_pickle stays off): save numeric arrays",
        )
    if dtype.fields is not None or dtype.kind not in NUMERIC_KINDS:
        raise SampleDataError(path, f"{where} has dtype {dtype}; samples must be numeric arrays")
    if len(shape) == 0:
        raise SampleDataError(path, f"{where} is a scalar; the first axis must index samples")
    return tuple(int(d) for d in shape), dtype, bool(fortran)


def _describe(
    key: str, shape: tuple[int, ...], dtype: np.dtype, fortran: bool, where: str, path: Path
) -> tuple[int, tuple[int, ...], int]:
    count, sample_shape = shape[0], shape[1:]
    if count == 0:
        raise SampleDataError(path, f"{where} is empty (0 samples)")
    if any(d == 0 for d in sample_shape):
        raise SampleDataError(path, f"{where} has an empty sample shape {sample_shape}")
    sample_bytes = math.prod(sample_shape) * dtype.itemsize
    if sample_bytes > MAX_SAMPLE_BYTES:
        raise SampleDataError(
            path, f"{where}: one sample is {sample_bytes} bytes (limit {MAX_SAMPLE_BYTES})"
        )
    return count, sample_shape, count * sample_bytes


class SampleFile:
    """An opened sample file: its arrays, validated; batches are read on demand."""

    def __init__(self, path: str | Path) -> None:
        from bnlint.loaders import LoadError, check_regular_file, read_head

        self.path = Path(path)
        try:
            info = check_regular_file(self.path)
            head = read_head(self.path, info, 8)
        except LoadError as error:
            raise SampleDataError(self.path, error.problem) from None
        self.size = info.st_size
        if head.startswith(NPY_MAGIC):
            self.kind = "npy"
            self.arrays = [self._npy_array()]
        elif head.startswith(ZIP_MAGIC):
            self.kind = "npz"
            self.arrays = self._npz_arrays()
        else:
            raise SampleDataError(self.path, "not a .npz or .npy file")
        counts = {array.count for array in self.arrays}
        if len(counts) > 1:
            listed = ", ".join(f"{a.key!r}: {a.count}" for a in self.arrays)
            raise SampleDataError(self.path, f"arrays hold different numbers of samples ({listed})")
        self.count = self.arrays[0].count

    # -- reading the structure -----------------------------------------------------------
    def _npy_array(self) -> SampleArray:
        with open(self.path, "rb") as stream:
            shape, dtype, fortran = _header(stream, "the file", self.path)
            offset = stream.tell()
        count, sample_shape, nbytes = _describe("", shape, dtype, fortran, "the file", self.path)
        if offset + nbytes != self.size:
            raise SampleDataError(
                self.path,
                f"the header declares {nbytes} bytes of data but the file holds "
                f"{self.size - offset} (truncated or corrupt)",
            )
        return SampleArray("", count, sample_shape, dtype, fortran, None, offset)

    def _npz_arrays(self) -> list[SampleArray]:
        try:
            archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise SampleDataError(self.path, f"not a readable .npz archive ({error})") from None
        with archive:
            members = archive.infolist()
            if not members:
                raise SampleDataError(self.path, "the archive holds no arrays")
            if len(members) > MAX_MEMBERS:
                raise SampleDataError(self.path, f"more than {MAX_MEMBERS} archive members")
            names = [m.filename for m in members]
            if len(set(names)) != len(names):
                raise SampleDataError(self.path, "the archive names a member twice")
            return [self._member_array(archive, member) for member in members]

    def _member_array(self, archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> SampleArray:
        from bnlint.report.sanitize import printable

        name = member.filename
        where = f"member {printable(name, 200)!r}"
        if not name.endswith(".npy"):
            problem = "is not an .npy array"
            if name.endswith((".pkl", ".pickle")):
                problem = "is a pickle; bnlint never unpickles sample data (allow_pickle is off)"
            raise SampleDataError(self.path, f"{where} {problem}")
        if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise SampleDataError(self.path, f"{where} uses an unsupported compression method")
        if member.compress_type == zipfile.ZIP_DEFLATED and (
            member.file_size > DEFLATE_MAX_RATIO * member.compress_size + 1024
        ):
            raise SampleDataError(
                self.path, f"{where} declares more data than its compressed bytes can hold"
            )
        try:
            with archive.open(member) as stream:
                shape, dtype, fortran = _header(stream, where, self.path)
                offset = stream.tell()
        except (zipfile.BadZipFile, OSError, RuntimeError, EOFError) as error:
            raise SampleDataError(self.path, f"{where} cannot be read ({error})") from None
        count, sample_shape, nbytes = _describe(name, shape, dtype, fortran, where, self.path)
        if offset + nbytes != member.file_size:
            raise SampleDataError(
                self.path,
                f"{where}: the header declares {nbytes} bytes of data but the member holds "
                f"{member.file_size - offset} (truncated or corrupt)",
            )
        return SampleArray(name[: -len(".npy")], count, sample_shape, dtype, fortran, name, offset)

    # -- matching the model ---------------------------------------------------------------
    def bind(self, inputs: Sequence[InputSpec]) -> dict[str, SampleArray]:
        """Which array feeds which model input; wrong keys, shapes or dtypes are refused."""
        if not inputs:
            raise SampleDataError(self.path, "the model has no inputs to feed")
        by_key = {array.key: array for array in self.arrays}
        if len(inputs) == 1 and len(self.arrays) == 1:
            bound = {inputs[0].name: self.arrays[0]}
        elif self.kind == "npy":
            names = ", ".join(repr(spec.name) for spec in inputs)
            raise SampleDataError(
                self.path, f"a .npy file feeds one input; the model has {len(inputs)} ({names})"
            )
        else:
            wanted = [spec.name for spec in inputs]
            missing = [name for name in wanted if name not in by_key]
            extra = [key for key in by_key if key not in wanted]
            if missing or extra:
                problem = []
                if missing:
                    problem.append("no array for input " + ", ".join(map(repr, missing)))
                if extra:
                    problem.append("array " + ", ".join(map(repr, extra)) + " is no model input")
                raise SampleDataError(
                    self.path,
                    "; ".join(problem) + f" (the model's inputs: {', '.join(map(repr, wanted))})",
                )
            bound = {name: by_key[name] for name in wanted}
        for spec in inputs:
            _check_against(self.path, spec, bound[spec.name])
        return bound

    # -- streaming ---------------------------------------------------------------------------
    def batches(
        self, bound: Mapping[str, SampleArray], batch: int
    ) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """``(first sample index, {input: array of up to batch rows})`` in file order."""
        readers = {name: _RowReader(self, array) for name, array in bound.items()}
        try:
            for start in range(0, self.count, batch):
                rows = min(batch, self.count - start)
                feeds = {}
                for name, reader in readers.items():
                    values = reader.read(start, rows)
                    _check_finite(self.path, name, values, start)
                    feeds[name] = values
                yield start, feeds
        finally:
            for reader in readers.values():
                reader.close()

    def describe(self) -> dict[str, Any]:
        """Count, shapes and dtypes (for provenance)."""
        return {
            "samples": self.count,
            "arrays": {
                array.key or "<npy>": {
                    "shape": [array.count, *array.shape],
                    "dtype": array.dtype.newbyteorder("=").name,
                }
                for array in self.arrays
            },
        }


def _check_against(path: Path, spec: InputSpec, array: SampleArray) -> None:
    label = repr(array.key) if array.key else "the array"
    dtype = array.dtype.newbyteorder("=").name
    if spec.dtype and dtype != spec.dtype:
        raise SampleDataError(
            path, f"{label} is {dtype}; the model's input {spec.name!r} is {spec.dtype}"
        )
    if spec.shape is None:
        return
    expected = tuple(spec.shape[1:])
    if len(expected) != len(array.shape):
        raise SampleDataError(
            path,
            f"{label} has samples of shape {array.shape}; the model's input {spec.name!r} "
            f"takes {_shape_text(spec.shape)} (first axis = samples)",
        )
    for want, got in zip(expected, array.shape, strict=True):
        if isinstance(want, int) and want >= 0 and want != got:
            raise SampleDataError(
                path,
                f"{label} has samples of shape {array.shape}; the model's input "
                f"{spec.name!r} takes {_shape_text(spec.shape)} (first axis = samples)",
            )


def _shape_text(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(d) if d not in (None, "") else "?" for d in shape) + ")"


def _check_finite(path: Path, name: str, values: np.ndarray, start: int) -> None:
    if values.dtype.kind != "f":
        return
    finite = np.isfinite(values.reshape(values.shape[0], -1)).all(axis=1)
    if not finite.all():
        index = start + int(np.argmin(finite))
        raise SampleDataError(path, f"sample {index} of input {name!r} contains NaN or infinity")


class _RowReader:
    """Reads rows [start, start + rows) of one array sequentially into a fresh buffer."""

    def __init__(self, samples: SampleFile, array: SampleArray) -> None:
        self.array = array
        self.path = samples.path
        self._archive = None
        self._whole: np.ndarray | None = None
        if array.member is None:
            self._stream: IO[bytes] = open(samples.path, "rb")  # noqa: SIM115
            self._stream.seek(array.offset)
        else:
            self._archive = zipfile.ZipFile(samples.path)
            self._stream = self._archive.open(array.member)
            self._stream.read(array.offset)  # the header, already validated
        self._position = 0

    def read(self, start: int, rows: int) -> np.ndarray:
        array = self.array
        if array.fortran:  # rows are not contiguous: read the whole array once
            if self._whole is None:
                total = array.count * array.sample_bytes
                if total > MAX_FORTRAN_BYTES:
                    raise SampleDataError(
                        self.path,
                        f"{array.key or 'the array'!r} is Fortran-ordered and {total} bytes; "
                        "only C-ordered arrays are streamed (save np.ascontiguousarray(...))",
                    )
                self._whole = (
                    self._read_rows(array.count).reshape((array.count, *array.shape)[::-1]).T
                )
            return np.ascontiguousarray(self._whole[start : start + rows])
        if start != self._position:
            raise ValueError("rows must be read in order")
        values = self._read_rows(rows).reshape((rows, *array.shape))
        self._position += rows
        return values

    def _read_rows(self, rows: int) -> np.ndarray:
        dtype = self.array.dtype
        buffer = np.empty(rows * math.prod(self.array.shape), dtype=dtype)
        view = memoryview(buffer).cast("B")
        filled = 0
        try:
            while filled < len(view):
                got = self._stream.readinto(view[filled:])
                if not got:
                    break
                filled += got
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise SampleDataError(self.path, f"cannot read the samples ({error})") from None
        if filled != len(view):
            raise SampleDataError(self.path, "the samples end early (truncated file)")
        if not dtype.isnative:
            buffer = buffer.astype(dtype.newbyteorder("="))
        return buffer

    def close(self) -> None:
        self._stream.close()
        if self._archive is not None:
            self._archive.close()
