"""Front ends: turn a model file (or a Python entry point) into a :class:`ModelGraph`.

Only this package knows about formats. The format is decided by the file's content
(zip, pickle, safetensors header, protobuf), with the extension as a tie-breaker, so an
ONNX file named ``.pt`` still loads as ONNX.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bnlint.config import Settings
    from bnlint.graph import ModelGraph

ONNX_MAX_BYTES = 2 * 1024**3  # protobuf's hard limit; larger models must use external data
ZIP_MAGIC = b"PK\x03\x04"
ONNX_EXTENSIONS = {".onnx", ".onnxtxt"}
TORCH_EXTENSIONS = {".pt", ".pth", ".pt2", ".ckpt", ".bin", ".ts", ".ptl", ".safetensors"}


class LoadError(Exception):
    """A model cannot be read. ``str()`` is the one-line ``<path>: <problem>``.

    ``user_traceback``: when the user's own code failed (a ``module:factory`` that raised),
    its traceback, bnlint's frames left out; shown above the one-line error.
    """

    def __init__(self, path: str | Path, problem: str, user_traceback: str | None = None) -> None:
        super().__init__(problem)
        self.path = str(path)
        self.problem = problem
        self.user_traceback = user_traceback

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def check_regular_file(path: Path) -> os.stat_result:
    """``stat`` the path and refuse anything that is not a non-empty regular file.

    Nothing is opened: a FIFO or a device would block or stream forever.
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            raise LoadError(path, "broken symbolic link") from None
        raise LoadError(path, "no such file") from None
    except OSError as error:
        if error.errno == 40:  # ELOOP
            raise LoadError(path, "symbolic link loop") from None
        raise LoadError(path, f"cannot stat: {error.strerror}") from None
    mode = info.st_mode
    kinds = (
        (stat.S_ISDIR, "is a directory"),
        (stat.S_ISFIFO, "is a FIFO (named pipe); refusing to open it"),
        (stat.S_ISCHR, "is a character device; refusing to open it"),
        (stat.S_ISBLK, "is a block device; refusing to open it"),
        (stat.S_ISSOCK, "is a socket; refusing to open it"),
    )
    for test, problem in kinds:
        if test(mode):
            raise LoadError(path, problem)
    if not stat.S_ISREG(mode):
        raise LoadError(path, "not a regular file")
    if info.st_size == 0:
        raise LoadError(path, "empty file")
    return info


def sniff_format(path: Path, head: bytes) -> str:
    """``onnx``, ``torch-zip``, ``pickle`` or ``safetensors`` from the first bytes."""
    if head.startswith(ZIP_MAGIC):
        return "torch-zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    return "onnx"


LFS_POINTER = b"version https://git-lfs.github.com/spec/"
LFS_POINTER_PREFIX_SIZE = 64
LFS_POINTER_MAX_BYTES = 1024  # a pointer is three short lines (version, oid, size)


def refuse_non_models(path: Path, info: os.stat_result, head: bytes) -> None:
    """Files people pass for a model that are not one, with what to do instead: a Git LFS
    pointer checked out without LFS, a Python file given without its ``:factory``."""
    if head.startswith(LFS_POINTER) and info.st_size <= LFS_POINTER_MAX_BYTES:
        raise LoadError(
            path,
            "Git LFS pointer, not the model: run `git lfs pull`, or check out with LFS "
            "(GitHub Actions: actions/checkout with `lfs: true`)",
        )
    if path.suffix == ".py":
        raise LoadError(path, python_file_problem(path, info))


def python_file_problem(path: Path, info: os.stat_result) -> str:
    """A ``.py`` path without ``:factory``: name the form, and the candidates in the file
    (top-level functions and classes, found with ``ast``; nothing is imported)."""
    import ast

    text = (
        "a Python file is linted through the function or class that builds the model: "
        f"`{path}:FACTORY`"
    )
    candidates: list[str] = []
    if info.st_size <= 1_000_000:
        try:
            tree = ast.parse(path.read_bytes())
            candidates = [
                node.name
                for node in tree.body
                if isinstance(node, (ast.FunctionDef, ast.ClassDef))
                and not node.name.startswith("_")
            ]
        except (SyntaxError, ValueError, OSError, RecursionError):
            candidates = []
    if candidates:
        shown = ", ".join(candidates[:8]) + (", …" if len(candidates) > 8 else "")
        text += f" (defined in it: {shown})"
    return text + "; it runs your code, as pytest does"


def is_entry_point(target: str) -> bool:
    """``pkg.module:factory`` or ``path/to/file.py:factory`` (not an existing file)."""
    if ":" not in target or Path(target).exists():
        return False
    module, _, factory = target.rpartition(":")
    return bool(module) and factory.isidentifier()


def read_head(path: Path, info: os.stat_result, size: int = 16) -> bytes:
    """The first bytes of the file ``check_regular_file`` vetted, opened without blocking.

    ``O_NONBLOCK`` keeps a FIFO swapped in after the ``stat`` from blocking the open, and
    the descriptor's own ``fstat`` must be the same regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise LoadError(path, f"cannot open: {error.strerror or error}") from None
    try:
        opened = os.fstat(descriptor)
        if not stat.S_ISREG(opened.st_mode) or (opened.st_dev, opened.st_ino) != (
            info.st_dev,
            info.st_ino,
        ):
            raise LoadError(path, "the file changed between stat and open; refusing it")
        return os.read(descriptor, size)
    except OSError as error:
        raise LoadError(path, f"cannot read: {error.strerror or error}") from None
    finally:
        os.close(descriptor)


def load_model(target: str, settings: Settings) -> ModelGraph:
    """Load any supported input; raises :class:`LoadError` with a one-line problem.

    A file is attacker-controlled data: whatever a reader raises on it (a malformed
    structure no check anticipated, memory exhausted under a limit) is this file's error,
    so the other files on the command line are still linted.
    """
    if is_entry_point(target):
        return _torch_loader().load_entry_point(target, settings)
    path = Path(target)
    info = check_regular_file(path)
    head = read_head(path, info, LFS_POINTER_PREFIX_SIZE)
    refuse_non_models(path, info, head)
    kind = sniff_format(path, head)
    try:
        graph = _load_file(path, kind, info, settings)
        from bnlint.loaders.strings import check_graph_strings

        check_graph_strings(graph)
        return graph
    except LoadError:
        raise
    except MemoryError:
        raise LoadError(path, "ran out of memory while reading it") from None
    except RecursionError:
        raise LoadError(path, "structure nested too deeply to read") from None
    except Exception as error:
        detail = " ".join(str(error).split())[:300]
        raise LoadError(
            path, f"cannot read it: {type(error).__name__}: {detail} (reader error; please report)"
        ) from error


def _load_file(path: Path, kind: str, info: os.stat_result, settings: Settings) -> ModelGraph:
    if kind == "onnx":
        if info.st_size > ONNX_MAX_BYTES:
            raise LoadError(
                path,
                "ONNX file over 2 GiB: protobuf cannot hold it; store weights as external data",
            )
        from bnlint.loaders import onnx as onnx_loader

        return onnx_loader.load(path, settings)
    if kind == "safetensors":
        from bnlint.loaders import safetensors as safetensors_loader

        return safetensors_loader.load(path, settings)
    return _torch_loader().load_file(path, kind, settings)


def _torch_loader():
    try:
        from bnlint.loaders import torch as torch_loader
    except ImportError as error:  # the module itself imports torch lazily; this is a bug guard
        raise LoadError("<torch>", f"PyTorch front end unavailable: {error}") from None
    return torch_loader
