"""The --sample-data reader: streamed, validated before anything is allocated, never unpickled."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from bnlint.drift.samples import InputSpec, SampleDataError, SampleFile
from tests import drift_cases as dc

X = InputSpec("x", ("N", 3, 8, 8), "float32")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("samples") / "linear.onnx"
    onnx.save(dc.LinearNet(0).model(), str(path))
    return path


def _npy_bytes(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def _error(path: Path, inputs=(X,)) -> str:
    with pytest.raises(SampleDataError) as caught:
        samples = SampleFile(path)
        bound = samples.bind(list(inputs))
        for _ in samples.batches(bound, 7):
            pass
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    return message


def test_streams_npz_and_npy_batches_in_order(tmp_path: Path) -> None:
    data = dc.samples(23, 0)
    np.savez(tmp_path / "a.npz", x=data)
    np.savez_compressed(tmp_path / "c.npz", anything=data)  # one input: any single key
    np.save(tmp_path / "a.npy", data)
    for name in ("a.npz", "c.npz", "a.npy"):
        samples = SampleFile(tmp_path / name)
        assert samples.count == 23
        bound = samples.bind([X])
        rows = [(start, feeds["x"]) for start, feeds in samples.batches(bound, 5)]
        assert [start for start, _ in rows] == [0, 5, 10, 15, 20]
        np.testing.assert_array_equal(np.concatenate([r for _, r in rows]), data)


def test_fortran_order_and_big_endian_arrays_are_read(tmp_path: Path) -> None:
    data = dc.samples(6, 1)
    np.save(tmp_path / "f.npy", np.asfortranarray(data))
    np.save(tmp_path / "be.npy", data.astype(">f4"))
    for name in ("f.npy", "be.npy"):
        samples = SampleFile(tmp_path / name)
        bound = samples.bind([X])
        got = np.concatenate([feeds["x"] for _, feeds in samples.batches(bound, 4)])
        np.testing.assert_array_equal(got, data)
        assert got.dtype == np.float32 and got.dtype.isnative


def test_several_inputs_are_bound_by_name(tmp_path: Path) -> None:
    a, b = np.zeros((4, 2), np.float32), np.ones((4, 3), np.int64)
    np.savez(tmp_path / "two.npz", b=b, a=a)
    samples = SampleFile(tmp_path / "two.npz")
    bound = samples.bind([InputSpec("a", ("N", 2), "float32"), InputSpec("b", (4, 3), "int64")])
    assert list(bound) == ["a", "b"]
    _, feeds = next(samples.batches(bound, 4))
    np.testing.assert_array_equal(feeds["b"], b)


@pytest.mark.parametrize(
    ("make", "inputs", "expected"),
    [
        (
            lambda p: np.savez(p, y=dc.samples(2, 0), z=dc.samples(2, 0)),
            (X,),
            "no array for input 'x'",
        ),
        (
            lambda p: np.savez(p, x=dc.samples(2, 0), extra=dc.samples(2, 0)),
            (X,),
            "array 'extra' is no model input",
        ),
        (
            lambda p: np.savez(p, x=np.zeros((2, 3, 9, 9), np.float32)),
            (X,),
            "samples of shape (3, 9, 9)",
        ),
        (lambda p: np.savez(p, x=np.zeros((2, 3, 8), np.float32)), (X,), "first axis = samples"),
        (
            lambda p: np.savez(p, x=np.zeros((2, 3, 8, 8))),
            (X,),
            "is float64; the model's input 'x' is float32",
        ),
        (lambda p: np.savez(p, x=np.zeros((0, 3, 8, 8), np.float32)), (X,), "empty (0 samples)"),
        (lambda p: np.savez(p, x=np.float32(1)), (X,), "is a scalar"),
        (
            lambda p: np.savez(p, a=np.zeros((2, 1)), b=np.zeros((3, 1))),
            (X,),
            "different numbers of samples",
        ),
        (lambda p: np.save(p, np.zeros((2, 3, 8, 8), np.float32)), (X, X), "feeds one input"),
    ],
)
def test_wrong_keys_shapes_dtypes_and_counts(tmp_path: Path, make, inputs, expected) -> None:
    path = tmp_path / "s.npz"
    make(path)
    path = path if path.exists() else path.with_suffix(".npz.npy")
    assert expected in _error(path, inputs)


def test_nan_and_infinity_name_the_sample(tmp_path: Path) -> None:
    data = dc.samples(20, 0)
    data[13, 1, 2, 3] = np.nan
    np.savez(tmp_path / "nan.npz", x=data)
    assert "sample 13 of input 'x' contains NaN" in _error(tmp_path / "nan.npz")
    data[13] = 0
    data[4, 0, 0, 0] = np.inf
    np.save(tmp_path / "inf.npy", data)
    assert "sample 4 of input 'x'" in _error(tmp_path / "inf.npy")


def test_pickles_are_refused_never_loaded(tmp_path: Path) -> None:
    class Boom:
        def __reduce__(self):
            return (Path("/nonexistent-bnlint-marker").touch, ())

    objects = np.empty(2, dtype=object)
    objects[:] = [Boom(), Boom()]
    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as archive:
        stream = io.BytesIO()
        np.save(stream, objects, allow_pickle=True)
        archive.writestr("x.npy", stream.getvalue())
    assert "pickled Python objects" in _error(tmp_path / "obj.npz")
    with zipfile.ZipFile(tmp_path / "pkl.npz", "w") as archive:
        archive.writestr("x.pkl", pickle.dumps(Boom()))
    assert "is a pickle" in _error(tmp_path / "pkl.npz")
    np.save(tmp_path / "obj.npy", objects, allow_pickle=True)
    assert "allow_pickle stays off" in _error(tmp_path / "obj.npy")
    assert not Path("/nonexistent-bnlint-marker").exists()


def test_structure_lies_are_caught_before_allocating(tmp_path: Path) -> None:
    data = _npy_bytes(dc.samples(4, 0))
    (tmp_path / "cut.npy").write_bytes(data[:-10])
    assert "truncated or corrupt" in _error(tmp_path / "cut.npy")
    # a header that declares a gigantic array in a tiny file: refused by size, not read
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1,), np.float32))
    header["shape"] = (10**12, 3, 8, 8)
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    (tmp_path / "liar.npy").write_bytes(stream.getvalue() + b"\0" * 64)
    assert "declares" in _error(tmp_path / "liar.npy")
    header["shape"] = (1, 1 << 31)
    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(stream, header)
    (tmp_path / "one-big-sample.npy").write_bytes(stream.getvalue())
    assert "one sample is" in _error(tmp_path / "one-big-sample.npy")


def test_zip_member_declaring_more_than_deflate_can_hold(tmp_path: Path) -> None:
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("x.npy", _npy_bytes(dc.samples(2, 0)))
    raw = bytearray(path.read_bytes())
    # rewrite the central directory's uncompressed size (offset 24 in the entry) to 4 GB - 1
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 24 : central + 28] = struct.pack("<I", 0xFFFFFFFE)
    path.write_bytes(bytes(raw))
    assert "more data than its compressed bytes" in _error(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"hello world", "not a .npz or .npy file"),
        (b"PK\x03\x04junk", "not a readable .npz"),
    ],
)
def test_not_a_sample_file(tmp_path: Path, content: bytes, expected: str) -> None:
    (tmp_path / "s.npz").write_bytes(content)
    assert expected in _error(tmp_path / "s.npz")


def test_cli_exits_2_with_one_line_naming_the_file(
    run_cli, model_path: Path, tmp_path: Path
) -> None:
    before = model_path.read_bytes()
    cases = {
        "keys.npz": lambda p: np.savez(p, a=dc.samples(3, 0), b=dc.samples(3, 0)),
        "nan.npz": lambda p: np.savez(p, x=np.full((3, 3, 8, 8), np.nan, np.float32)),
        "dtype.npz": lambda p: np.savez(p, x=dc.samples(3, 0).astype(np.float16)),
        "empty.npz": lambda p: p.write_bytes(b""),
    }
    for name, make in cases.items():
        path = tmp_path / name
        make(path)
        for fmt in ("text", "json"):
            result = run_cli([model_path, "--sample-data", path, "--format", fmt], exit_code=2)
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert len(lines) == 1 and str(path) in lines[0], result.stderr
    result = run_cli([model_path, "--sample-data", tmp_path / "missing.npz"], exit_code=2)
    assert "missing.npz: no such file" in result.stderr
    assert model_path.read_bytes() == before


def test_a_report_never_replaces_the_sample_file(run_cli, model_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "served.npz"
    np.savez(path, x=dc.samples(20, 0))
    before = path.read_bytes()
    for option in ("-o", "--report-html", "--report-md"):
        result = run_cli([model_path, "--sample-data", path, option, path], exit_code=2)
        assert str(path) in result.stderr
    assert path.read_bytes() == before
