"""Bad input: one line ``bnlint: error: <path>: <problem>``, exit 2, no traceback, others linted."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.zoo import onnx_zoo


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("bnlint: error:")]


@pytest.fixture
def good_model(tmp_path: Path) -> Path:
    return onnx_zoo.opset14_training_mode(tmp_path / "good")


BAD_FILES = {
    "empty": (lambda p: p.write_bytes(b""), "empty file"),
    "random": (lambda p: p.write_bytes(os.urandom(64) + b"\xff" * 8), "not a valid ONNX model"),
    "text": (lambda p: p.write_text("hello, I am not a model\n"), "not"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_unreadable_file_is_one_line_and_exit_2(
    kind: str, tmp_path: Path, run_cli, good_model
) -> None:
    write, problem = BAD_FILES[kind]
    bad = tmp_path / f"{kind}.onnx"
    write(bad)
    result = run_cli([bad, good_model], exit_code=2)
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"bnlint: error: {bad}: ") and problem in line
    assert "BN003" in result.stdout, "the readable model is still linted"


def test_truncated_protobuf(tmp_path: Path, run_cli) -> None:
    data = onnx_zoo.resnet_opset15(tmp_path).read_bytes()
    bad = tmp_path / "truncated.onnx"
    bad.write_bytes(data[: len(data) // 2])
    result = run_cli([bad], exit_code=2)
    assert error_lines(result.stderr) == [
        f"bnlint: error: {bad}: not a valid ONNX model: protobuf parse error (truncated or corrupt)"
    ]


def test_missing_file_and_json_reports_the_error(tmp_path: Path, run_cli, good_model) -> None:
    missing = tmp_path / "nope.onnx"
    result = run_cli([missing, good_model, "--format", "json"], exit_code=2)
    models = {Path(m["path"]).name: m for m in result.json["models"]}
    assert models["nope.onnx"] == {
        "path": str(missing),
        "format": None,
        "status": "error",
        "error": "no such file",
        "batchnorms": None,
        "foldable": None,
        "findings": [],
    }
    assert models[good_model.name]["status"] == "ok" and models[good_model.name]["findings"]
    assert result.json["summary"]["unreadable"] == 1


def test_fifo_is_refused_without_opening(tmp_path: Path, run_cli) -> None:
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)  # opening it for reading would block forever
    result = run_cli([fifo], exit_code=2)
    assert error_lines(result.stderr) == [
        f"bnlint: error: {fifo}: is a FIFO (named pipe); refusing to open it"
    ]


def test_symlink_loop(tmp_path: Path, run_cli) -> None:
    loop = tmp_path / "loop.onnx"
    loop.symlink_to(loop)
    result = run_cli([loop], exit_code=2)
    assert error_lines(result.stderr) == [f"bnlint: error: {loop}: symbolic link loop"]


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        ("/etc/passwd", "absolute paths are not allowed"),
        ("../outside.bin", "'..' leaves the model's folder"),
        ("missing.bin", "file not found"),
    ],
)
def test_escaping_or_missing_external_data(
    location: str, problem: str, tmp_path: Path, run_cli
) -> None:
    path = onnx_zoo.external_data_at(tmp_path / "m", location)
    (tmp_path / "outside.bin").write_bytes(b"\0" * 4096)
    result = run_cli([path], exit_code=2)
    (line,) = error_lines(result.stderr)
    assert line.startswith(f"bnlint: error: {path}: external data of tensor ") and problem in line


def test_symlink_leaving_the_folder_is_refused(tmp_path: Path, run_cli) -> None:
    path = onnx_zoo.external_data(tmp_path / "m")
    data = path.parent / "external_data.bin"
    outside = tmp_path / "elsewhere.bin"
    data.rename(outside)
    data.symlink_to(outside)
    result = run_cli([path], exit_code=2)
    assert "resolves outside the model's folder" in result.stderr
    result = run_cli(
        [path, "--config", _config(tmp_path, f'allowed-data-roots = ["{tmp_path}"]')], exit_code=0
    )


def test_hugging_face_cache_layout_is_allowed(tmp_path: Path, run_cli) -> None:
    repo = tmp_path / "hub" / "models--org--net"
    snapshot = repo / "snapshots" / "abc123"
    path = onnx_zoo.external_data(snapshot)
    blobs = repo / "blobs"
    blobs.mkdir(parents=True)
    for name in ("external_data.bin", path.name):
        (snapshot / name).rename(blobs / f"sha-{name}")
        (snapshot / name).symlink_to(blobs / f"sha-{name}")
    run_cli([snapshot / path.name], exit_code=0)


def test_byte_range_beyond_the_file(tmp_path: Path, run_cli) -> None:
    path = onnx_zoo.external_data(tmp_path / "m")
    data = path.parent / "external_data.bin"
    data.write_bytes(data.read_bytes()[:100])
    result = run_cli([path], exit_code=2)
    assert "exceed the file's 100" in result.stderr


def test_hard_linked_external_data_is_refused(tmp_path: Path, run_cli) -> None:
    path = onnx_zoo.external_data(tmp_path / "m")
    os.link(path.parent / "external_data.bin", tmp_path / "alias.bin")
    result = run_cli([path], exit_code=2)
    assert "several hard links" in result.stderr


def test_input_file_is_never_modified(tmp_path: Path, run_cli) -> None:
    path = onnx_zoo.external_data(tmp_path / "m")
    files = [path, path.parent / "external_data.bin"]
    before = [(hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in files]
    run_cli([path, "--format", "json"], exit_code=0)
    after = [(hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in files]
    assert before == after


def test_debug_shows_traceback_for_internal_errors(tmp_path: Path, run_cli, monkeypatch) -> None:
    import bnlint.api

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(bnlint.api, "lint_target", explode)
    path = onnx_zoo.resnet_opset15(tmp_path)
    result = run_cli([path], exit_code=2)
    assert error_lines(result.stderr) == [
        "bnlint: error: internal error: RuntimeError: boom (rerun with --debug)"
    ]


def _config(folder: Path, text: str) -> Path:
    path = folder / "bnlint.toml"
    path.write_text(text + "\n")
    return path
