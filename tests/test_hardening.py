"""Readers refuse before they allocate, never crash on what a file claims, never block.

Unit-level checks of the defences the hostile corpus (``tests/hostile``) exercises through
the real executable: archive and tensor size checks, the inert unpickler's memo and
sharing limits, external data that changes after validation, names that are not text,
and the escaping of what reaches a terminal.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest

from bnlint.config import Settings
from bnlint.graph import UnreadableParameter
from bnlint.loaders import LoadError, check_regular_file, load_model, read_head
from bnlint.loaders.external import ExternalRef, lazy_reader
from bnlint.loaders.safe_pickle import RestrictedUnpickler
from bnlint.loaders.torch_archive import ZipArchive, strided_array
from bnlint.loaders.torch_pickle import interpret
from bnlint.report.sanitize import printable
from bnlint.report.view import short_path
from bnlint.report.write import write_atomic
from tests.zoo import onnx_zoo


def _zip(path: Path, members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


# -- zip archives and tensors -------------------------------------------------------------
def test_a_zip_bomb_is_refused_from_its_central_directory(tmp_path: Path) -> None:
    path = _zip(tmp_path / "bomb.pt2", {"m/models/model.json": bytes(32 * 1024**2)}, 8)
    assert path.stat().st_size < 100_000
    with pytest.raises(LoadError, match="refusing a likely zip bomb"):
        ZipArchive(path)


def test_a_stored_member_cannot_claim_more_bytes_than_it_holds(tmp_path: Path) -> None:
    path = _zip(tmp_path / "m.pt2", {"m/data/0": bytes(16)})
    data = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = data.index(signature) + offset  # the uncompressed-size field
        data[start : start + 4] = struct.pack("<I", 2**20)
    path.write_bytes(bytes(data))
    with pytest.raises(LoadError, match="stored uncompressed but declares 1048576 bytes in 16"):
        ZipArchive(path)


def test_an_unreadable_member_is_a_load_error(tmp_path: Path) -> None:
    noise = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    path = _zip(tmp_path / "m.pt2", {"m/models/model.json": noise}, zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    start = data.index(b"PK\x03\x04") + 30 + len("m/models/model.json") + 5_000
    data[start : start + 64] = bytes(64)  # corrupt the middle of the deflate stream
    path.write_bytes(bytes(data))
    with pytest.raises(LoadError, match="cannot read archive member 'm/models/model\\.json'"):
        ZipArchive(path).read("models/model.json")


def test_a_zero_stride_tensor_is_not_expanded_into_memory() -> None:
    raw = np.arange(4, dtype=np.float32).tobytes()
    small = strided_array(raw, "float32", (3, 4), (0, 1), 0)  # a broadcast row: allowed
    assert small.shape == (3, 4) and (small[2] == [0, 1, 2, 3]).all()
    with pytest.raises(ValueError, match="refusing to expand"):
        strided_array(raw, "float32", (2**25, 4), (0, 1), 0)


def test_a_tensor_larger_than_its_member_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    archive = ZipArchive(_zip(tmp_path / "m.pt2", {"m/data/0": bytes(16)}))
    load = archive.tensor_loader("data/0", "float32", (2**40,), (1,), 0, tensor="bn.var")
    with pytest.raises(UnreadableParameter, match="holds 16 bytes, fewer than"):
        load()
    negative = archive.tensor_loader("data/0", "float32", (4,), (1,), -1, tensor="bn.var")
    with pytest.raises(UnreadableParameter, match="negative storage offset"):
        negative()


# -- the inert unpickler ------------------------------------------------------------------
def test_a_huge_memo_index_costs_nothing() -> None:
    """The C unpickler would grow its memo array to 16 GiB for this 9-byte pickle."""
    data = b"\x80\x02N" + b"r" + struct.pack("<I", 2**31 - 16) + b"."
    assert RestrictedUnpickler(data).load() is None


def test_shared_structures_are_interpreted_once() -> None:
    shared: list = [0]
    for _ in range(80):
        shared = [shared, shared]  # 2**80 paths through 161 objects
    value = interpret(RestrictedUnpickler(pickle.dumps(shared, protocol=2)).load())
    assert value[0] is value[1]


def test_a_pickle_describing_too_many_objects_is_refused(monkeypatch) -> None:
    import bnlint.loaders.torch_pickle as torch_pickle

    monkeypatch.setattr(torch_pickle, "MAX_VISITS", 1_000)
    data = pickle.dumps([[i] for i in range(1_000)], protocol=2)
    with pytest.raises(ValueError, match="more than 1000 objects"):
        interpret(RestrictedUnpickler(data).load())


def test_a_tensor_layout_that_is_not_integers_is_refused() -> None:
    import io

    import torch

    storage = object()

    class Rebuild:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (storage, 0, ("a",), (1,), False, {}))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "0", "cpu", 4) if obj is storage else None

    stream = io.BytesIO()
    Pickler(stream, protocol=2).dump(Rebuild())
    with pytest.raises(ValueError, match="not non-negative integers"):
        interpret(RestrictedUnpickler(stream.getvalue()).load())


# -- files, FIFOs, external data ----------------------------------------------------------
def test_read_head_never_blocks_on_a_fifo_swapped_in_after_stat(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x07")
    info = check_regular_file(path)
    path.unlink()
    os.mkfifo(path)  # opening it without O_NONBLOCK would wait for a writer forever
    with pytest.raises(LoadError, match="changed between stat and open"):
        read_head(path, info)


def test_external_data_that_shrinks_after_validation_is_unreadable(tmp_path: Path) -> None:
    data = tmp_path / "w.bin"
    data.write_bytes(np.ones(1024, np.float32).tobytes())
    read = lazy_reader(ExternalRef(data, 0, 4096), np.dtype(np.float32), (1024,), "w")
    data.write_bytes(b"")  # a mapping past the end would die of SIGBUS on first access
    with pytest.raises(UnreadableParameter, match="changed since it was validated"):
        read()


def test_names_that_are_not_text_are_refused(tmp_path: Path) -> None:
    path = onnx_zoo.resnet_opset15(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"stem.conv", b"stem\xff\xfeonv"))
    with pytest.raises(LoadError, match="is not valid UTF-8 text"):
        load_model(str(path), Settings())


def test_an_unexpected_reader_error_fails_only_that_file(
    tmp_path: Path, run_cli, monkeypatch
) -> None:
    import bnlint.loaders.onnx as onnx_loader

    good = onnx_zoo.opset14_training_mode(tmp_path / "good")
    bad = onnx_zoo.resnet_opset15(tmp_path / "bad")
    original = onnx_loader.load

    def load(path, settings):
        if Path(path) == bad:
            raise TypeError("'NoneType' object is not subscriptable")
        return original(path, settings)

    monkeypatch.setattr(onnx_loader, "load", load)
    result = run_cli([bad, good], exit_code=2)
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("bnlint:")]
    assert line.startswith(f"bnlint: error: {bad}: cannot read it: TypeError")
    assert "BN003" in result.stdout


def test_a_model_passed_as_a_directory_is_refused_without_opening(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="is a directory"):
        load_model(str(tmp_path), Settings())


# -- what reaches a terminal or a report file ---------------------------------------------
@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("a\x1b[2Jb", "a\\x1b[2Jb"),
        ("line\nbreak\r", "line\\x0abreak\\x0d"),
        ("\u202eevil\u2066", "\\u202eevil\\u2066"),
        ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("lone\udcff", "lone\\udcff"),
        ("plain ünïcödé ✓", "plain ünïcödé ✓"),
    ],
)
def test_printable_neutralises_terminal_controls(raw: str, shown: str) -> None:
    assert printable(raw, None) == shown
    printable(raw, None).encode("utf-8")  # always printable on a UTF-8 terminal


def test_display_path_survives_a_symlink_loop(tmp_path: Path) -> None:
    loop = tmp_path / "loop.onnx"
    loop.symlink_to(loop)
    assert short_path(str(loop)) == str(loop)


def test_reports_are_written_atomically_and_never_through_a_symlink(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    report = tmp_path / "report.html"
    report.symlink_to(victim)
    write_atomic(report, "path with undecodable bytes: /models/\udcff.onnx\n")
    assert victim.read_text() == "keep me"
    assert not report.is_symlink()
    assert report.read_text() == "path with undecodable bytes: /models/\\udcff.onnx\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "victim.txt"]


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    (target := tmp_path / "report.json").mkdir()  # os.replace onto a folder fails
    with pytest.raises(OSError):
        write_atomic(target, "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_the_input_model_is_never_opened_for_writing(tmp_path: Path, monkeypatch) -> None:
    path = onnx_zoo.external_data(tmp_path)
    opened = []
    real_open = os.open

    def spy(file, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
            opened.append(str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)
    graph = load_model(str(path), Settings())
    for name in graph.params.names():
        graph.params.get(name)
    onnx.load(str(path))  # control: the spy sees reads without complaint
    assert opened == []


def test_default_loading_never_calls_a_loader_that_runs_code(tmp_path: Path, monkeypatch) -> None:
    """Without --trust-model-code, torch.save zips (state dicts, pickled modules), TorchScript
    and .pt2 are read by bnlint alone: torch.load is called only for a legacy (pre-1.6)
    state dict, with ``weights_only=True`` passed explicitly, and neither ``torch.jit.load``
    nor ``torch.export.load`` is ever called."""
    import torch
    from torch import nn

    from bnlint.api import lint
    from tests import torch_formats

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()
    example = (torch.randn(1, 3, 8, 8),)
    paths = torch_formats.save_all(model, example, tmp_path, ("pt2", "script", "state_dict"))
    torch.save(model, pickled := tmp_path / "module.pt")  # needs weights_only=False in torch
    legacy = tmp_path / "legacy.pt"
    torch.save(model.state_dict(), legacy, _use_new_zipfile_serialization=False)
    weights_only = []
    real_load = torch.load

    def spy_load(*args, **kwargs):
        weights_only.append(kwargs.get("weights_only", "not passed"))
        return real_load(*args, **kwargs)

    def forbidden(*args, **kwargs):
        raise AssertionError("a loader that runs code from the file was called")

    monkeypatch.setattr(torch, "load", spy_load)
    monkeypatch.setattr(torch.jit, "load", forbidden)
    monkeypatch.setattr(torch.export, "load", forbidden)
    report = lint([str(path) for path in (*paths.values(), pickled, legacy)])
    status = {Path(model.path).name: model.status for model in report.models}
    assert set(status.values()) == {"ok"}, status
    assert weights_only == [True]  # the legacy state dict only


def test_a_report_never_replaces_the_model(tmp_path: Path, run_cli) -> None:
    path = onnx_zoo.opset14_training_mode(tmp_path)
    before = path.read_bytes()
    result = run_cli([path, "-o", path, "--format", "json"], exit_code=2)
    assert result.stderr.strip() == (
        f"bnlint: error: {path}: is the same file as the input {path}; refusing to overwrite it"
    )
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_report_never_replaces_another_binary_file(tmp_path: Path, run_cli) -> None:
    path = onnx_zoo.opset14_training_mode(tmp_path / "a")
    other = onnx_zoo.resnet_opset15(tmp_path / "b")
    before = other.read_bytes()
    result = run_cli([path, "-o", other, "--format", "json"], exit_code=2)
    assert result.stderr.strip() == (
        f"bnlint: error: {other}: it holds binary data (a model?); "
        "refusing to replace it with a report"
    )
    assert other.read_bytes() == before


def test_a_pt2_program_over_max_nodes_is_refused_before_it_is_built(tmp_path: Path) -> None:
    import torch
    from torch import nn

    from tests import torch_formats

    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    path = torch_formats.save_pt2(model, (torch.randn(1, 3, 8, 8),), tmp_path / "m.pt2")
    assert load_model(str(path), Settings(max_nodes=3)).nodes
    with pytest.raises(LoadError, match=r"\d+ nodes exceed the limit of 2 \(max-nodes\)"):
        load_model(str(path), Settings(max_nodes=2))


def test_torch_warnings_about_a_crafted_pickle_never_reach_the_terminal(tmp_path: Path) -> None:
    import warnings

    import torch
    from torch import nn

    torch.save(nn.BatchNorm2d(4).state_dict(), tmp_path / "m.pt")
    with zipfile.ZipFile(tmp_path / "m.pt") as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    data_pkl = next(name for name in members if name.endswith("data.pkl"))
    members[data_pkl] = b"\x80\x1a" + members[data_pkl][2:]  # "pickle protocol 26"
    path = _zip(tmp_path / "odd.pt", members)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        load_model(str(path), Settings())
    assert [str(w.message) for w in caught] == []


def _signalling_nan_model(path: Path) -> Path:
    """A BN whose running variance is four signalling NaNs (they raise on any float cast)."""
    from onnx import TensorProto, helper

    def tensor(name: str, raw: bytes) -> TensorProto:
        return TensorProto(name=name, data_type=TensorProto.FLOAT, dims=[4], raw_data=raw)

    values = [np.ones(4, np.float32).tobytes(), *[np.zeros(4, np.float32).tobytes()] * 2]
    initializers = [tensor(n, raw) for n, raw in zip("gbm", values, strict=True)]
    initializers.append(tensor("v", struct.pack("<I", 0x7F800001) * 4))
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 2, 2]) for n in "xy")
    conv = helper.make_node("Conv", ["x", "w"], ["c"], name="conv")
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 4, 1, 1], np.eye(4).ravel().tolist())
    bn = helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], name="bn")
    graph = helper.make_graph([conv, bn], "snan", [x], [y], [weight, *initializers])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)]), path)
    return path


def test_signalling_nans_in_a_model_print_no_warning(tmp_path: Path) -> None:
    import subprocess

    model = _signalling_nan_model(tmp_path / "snan.onnx")
    (tmp_path / "copy.onnx").write_bytes(model.read_bytes())
    runs = {
        "lint": [str(tmp_path), "-j", "2", "--report-html", "r.html"],
        "fold": ["fold", str(model), "-o", str(tmp_path / "folded.onnx")],
    }
    for name, argv in runs.items():
        done = subprocess.run(
            [sys.executable, "-m", "bnlint", *argv],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=120,
        )
        assert done.returncode in (0, 1), (name, done.stderr)
        assert "Warning" not in done.stderr, (name, done.stderr)
    assert (
        "BN006"
        in subprocess.run(
            [sys.executable, "-m", "bnlint", str(model)],
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )
