"""Write report files atomically: a temporary file in the same folder, then a rename.

The temporary file is created exclusively (``mkstemp``: ``O_EXCL``, mode 0600), so a
planted symlink cannot redirect the write; the rename replaces a symlink at the target
instead of writing through it; on any failure the temporary file is removed. Reports are
text, so an existing binary file at the target (most likely the model itself, as in
``bnlint model.onnx -o model.onnx``) is never replaced.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

_SNIFF_BYTES = 4096


def write_atomic(path: str | Path, text: str) -> None:
    target = Path(path)
    _refuse_binary_target(target)
    folder = target.parent if str(target.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        # A path from the command line may hold undecodable bytes (surrogate escapes):
        # write them as visible escapes rather than fail after the lint.
        with os.fdopen(
            handle, "w", encoding="utf-8", errors="backslashreplace", newline="\n"
        ) as stream:
            stream.write(text)
        os.chmod(temporary, _mode_for(target))
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _mode_for(target: Path) -> int:
    """Keep an existing file's permissions; a new file gets what open() would give it.

    mkstemp creates 0600 files, which would make a report artifact unreadable to others.
    """
    try:
        return target.stat().st_mode & 0o777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask


def _refuse_binary_target(target: Path) -> None:
    """Raise if ``target`` is an existing regular file holding binary data (NUL bytes).

    Opened without blocking and only if it is a regular file: a FIFO is never read.
    """
    try:
        descriptor = os.open(target, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return  # absent or unreadable: the write decides
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return
        head = os.read(descriptor, _SNIFF_BYTES)
    finally:
        os.close(descriptor)
    if b"\0" in head:
        raise FileExistsError(
            errno.EEXIST, "it holds binary data (a model?); refusing to replace it with a report"
        )
