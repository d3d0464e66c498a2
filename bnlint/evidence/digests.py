"""sha256 digests of files, read in fixed-size chunks and never of anything but a regular file."""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any

CHUNK_BYTES = 1 << 20


def file_digest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``{"sha256", "size"}`` of a regular file, read in fixed-size chunks.

    None for anything that is not a readable regular file (a directory, a FIFO, a device,
    a ``module:factory`` entry point): such a thing is never read here.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)  # non-blocking: a FIFO swapped in cannot hang us
    except (OSError, ValueError):
        return None
    try:
        with os.fdopen(descriptor, "rb", buffering=0) as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            digest, size = hashlib.sha256(), 0
            buffer = bytearray(CHUNK_BYTES)
            view = memoryview(buffer)
            while count := handle.readinto(buffer):
                digest.update(view[:count])
                size += count
            return {"sha256": digest.hexdigest(), "size": size}
    except OSError:
        return None
