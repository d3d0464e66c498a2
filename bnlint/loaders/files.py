"""What every front end shares: the one-line load error, the checks made before a file is
opened, how a ``module:factory`` entry point is told from a path, and the optional torch."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

ZIP_MAGIC = b"PK\x03\x04"


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


INSTALL_HINT = "pip install 'bnlint[torch]'"


def require_torch(path: str | Path) -> Any:
    """The torch module, or a LoadError telling the user how to install it."""
    try:
        import torch
    except ImportError:
        raise LoadError(
            path, f"reading PyTorch models needs PyTorch, which is not installed: {INSTALL_HINT}"
        ) from None
    return torch
