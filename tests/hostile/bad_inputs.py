"""One file (or folder) per class of bad input that needs no PyTorch to build.

Each builder writes into its own folder and returns a :class:`HostileCase`: the path to
pass on the command line and what ``bnlint`` must do with it. ``refused`` cases end in
exit 2 and one line ``bnlint: error: <path>: <problem>``; ``linted`` cases are read and
must report ``codes``. Malformed graphs live in :mod:`tests.hostile.graphs`, the PyTorch
payloads in :mod:`tests.hostile.generate` and :mod:`tests.hostile.archives`.
"""

from __future__ import annotations

import os
import socket
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx

from tests.hostile.case import HostileCase, linted, refused
from tests.hostile.graphs import (
    bad_statistics,
    big_graph,
    cycle,
    dangling,
    deep_protobuf,
    hostile_names,
    huge_declared_dims,
    mismatched_shapes,
    nested_subgraphs,
    over_node_limit,
    wrong_bn_input_count,
)
from tests.zoo import onnx_zoo


# -- the file itself ----------------------------------------------------------------------
def empty(folder: Path) -> HostileCase:
    (path := folder / "empty.onnx").write_bytes(b"")
    return refused(path, "empty file")


def random_bytes(folder: Path) -> HostileCase:
    data = np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    (path := folder / "random.onnx").write_bytes(b"\xff" + data)
    return refused(path, "not a valid ONNX model")


def truncated(folder: Path) -> HostileCase:
    data = onnx_zoo.resnet_opset15(folder / "src").read_bytes()
    (path := folder / "truncated.onnx").write_bytes(data[: len(data) // 3])
    return refused(path, "protobuf parse error")


def wrong_extension(folder: Path) -> HostileCase:
    """An ONNX model named ``.pt``: the content decides, so it is linted as ONNX."""
    source = onnx_zoo.opset14_training_mode(folder / "src")
    (path := folder / "really_onnx.pt").write_bytes(source.read_bytes())
    return linted(path, "BN003")


def text_as_model(folder: Path) -> HostileCase:
    (path := folder / "notes.pt2").write_text("definitely not a model\n" * 50)
    return refused(path, "not a valid ONNX model")


def onnx_over_2gib(folder: Path) -> HostileCase:
    """A sparse 2 GiB + 1 byte file: refused from its size, before a byte is read."""
    path = folder / "huge.onnx"
    with path.open("wb") as handle:
        handle.truncate(2 * 1024**3 + 1)
    return refused(path, "over 2 GiB")


def directory(folder: Path) -> HostileCase:
    """A folder holding a subfolder and a symlink to ``/`` named like models: neither is
    opened or walked; the one real model is linted."""
    root = folder / "models.onnx"
    (root / "sub.onnx").mkdir(parents=True)
    (root / "root.onnx").symlink_to("/")
    onnx_zoo.opset14_training_mode(root)
    return linted(root, "BN003")


def fifo(folder: Path) -> HostileCase:
    os.mkfifo(path := folder / "pipe.onnx")
    return refused(path, "is a FIFO (named pipe); refusing to open it")


def device(folder: Path) -> HostileCase:
    """``/dev/zero`` would stream zeros forever."""
    (path := folder / "zero.onnx").symlink_to("/dev/zero")
    return refused(path, "is a character device; refusing to open it")


def unix_socket(folder: Path) -> HostileCase:
    path = folder / "sock.onnx"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))  # the socket file stays after the socket closes
    return refused(path, "is a socket; refusing to open it")


def symlink_loop(folder: Path) -> HostileCase:
    (path := folder / "loop.onnx").symlink_to(folder / "loop.onnx")
    return refused(path, "symbolic link loop")


def broken_symlink(folder: Path) -> HostileCase:
    (path := folder / "dangling.onnx").symlink_to(folder / "nowhere.onnx")
    return refused(path, "broken symbolic link")


# -- external data ------------------------------------------------------------------------
def external_dotdot(folder: Path) -> HostileCase:
    (folder / "secret.bin").write_bytes(b"\x01" * 65536)
    return refused(
        onnx_zoo.external_data_at(folder / "m", "../secret.bin"), "'..' leaves the model's folder"
    )


def external_absolute(folder: Path) -> HostileCase:
    return refused(
        onnx_zoo.external_data_at(folder / "m", "/etc/passwd"), "absolute paths are not allowed"
    )


def external_symlink(folder: Path) -> HostileCase:
    (folder / "secret.bin").write_bytes(b"\x01" * 65536)
    path = onnx_zoo.external_data_at(folder / "m", "link.bin")
    (path.parent / "link.bin").symlink_to(folder / "secret.bin")
    return refused(path, "resolves outside the model's folder")


def external_fake_hf_cache(folder: Path) -> HostileCase:
    """A folder shaped like a Hugging Face cache whose ``blobs`` is a symlink to ``/``: the
    external data is a symlink to a decoy outside the model's folder (issue 12, item 3)."""
    repo = folder / "hub" / "models--org--net"
    path = onnx_zoo.external_data(repo / "snapshots" / "abc123")
    data = path.parent / "external_data.bin"
    data.rename(decoy := folder / "decoy.bin")
    data.symlink_to(decoy)
    (repo / "blobs").symlink_to("/")
    return refused(path, "resolves outside the model's folder")


def external_missing(folder: Path) -> HostileCase:
    return refused(onnx_zoo.external_data_at(folder / "m", "gone.bin"), "file not found")


def external_fifo(folder: Path) -> HostileCase:
    path = onnx_zoo.external_data_at(folder / "m", "pipe.bin")
    os.mkfifo(path.parent / "pipe.bin")
    return refused(path, "not a regular file")


def external_hardlink(folder: Path) -> HostileCase:
    path = onnx_zoo.external_data(folder / "m")
    os.link(path.parent / "external_data.bin", folder / "alias.bin")
    return refused(path, "several hard links")


def external_range(folder: Path) -> HostileCase:
    path = onnx_zoo.external_data(folder / "m")
    data = path.parent / "external_data.bin"
    data.write_bytes(data.read_bytes()[:100])
    return refused(path, "exceed the file's 100")


def external_huge_dims(folder: Path) -> HostileCase:
    """An external tensor declaring 2**60 elements is refused from its declared size."""
    path = onnx_zoo.external_data(folder / "m")
    model = onnx.load(str(path), load_external_data=False)
    tensor = model.graph.initializer[0]
    del tensor.dims[:]
    tensor.dims.extend([2**30, 2**30])
    onnx.save(model, str(path))
    return refused(path, "does not match the tensor's")


def hostile_file_name(folder: Path) -> HostileCase:
    """A file name with a newline, an ANSI sequence and undecodable bytes, holding nothing."""
    raw = os.fsencode(folder) + b"/bad\x1b[2J\nname\xff.onnx"
    with open(raw, "wb"):
        pass
    return refused(Path(os.fsdecode(raw)), "empty file")


def zip_bomb(folder: Path) -> HostileCase:
    """A .pt2 whose one member inflates 64 KiB into 64 MiB of zeros."""
    path = folder / "bomb.pt2"
    chunk = bytes(1024**2)
    with (
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
        archive.open("bomb/models/model.json", "w") as member,
    ):
        for _ in range(64):
            member.write(chunk)
    return refused(path, "refusing a likely zip bomb", torch=True, expected_seconds=6)


BUILDERS: dict[str, Callable[[Path], HostileCase]] = {
    "empty": empty,
    "random_bytes": random_bytes,
    "truncated": truncated,
    "wrong_extension": wrong_extension,
    "text_as_model": text_as_model,
    "onnx_over_2gib": onnx_over_2gib,
    "directory": directory,
    "fifo": fifo,
    "device": device,
    "unix_socket": unix_socket,
    "symlink_loop": symlink_loop,
    "broken_symlink": broken_symlink,
    "external_dotdot": external_dotdot,
    "external_absolute": external_absolute,
    "external_symlink": external_symlink,
    "external_fake_hf_cache": external_fake_hf_cache,
    "external_missing": external_missing,
    "external_fifo": external_fifo,
    "external_hardlink": external_hardlink,
    "external_range": external_range,
    "external_huge_dims": external_huge_dims,
    "huge_declared_dims": huge_declared_dims,
    "cycle": cycle,
    "dangling": dangling,
    "wrong_bn_input_count": wrong_bn_input_count,
    "mismatched_shapes": mismatched_shapes,
    "bad_statistics": bad_statistics,
    "nested_subgraphs": nested_subgraphs,
    "deep_protobuf": deep_protobuf,
    "over_node_limit": over_node_limit,
    "big_graph": big_graph,
    "hostile_names": hostile_names,
    "hostile_file_name": hostile_file_name,
    "zip_bomb": zip_bomb,
}
