"""Reading a configuration file as data: a regular file, bounded in size and nesting.

A discovered ``.bnlint.toml`` is data (docs/security.md) and so is every file it
``extend``s, which may name any path: ``extend = "/dev/zero"`` made ``tomllib`` read until
memory ran out, a FIFO (or ``/dev/stdin`` of a CI job) blocked forever, a symlinked
``pyproject.toml`` may point at a procfs file whose size is a lie. So the path is
``stat``-ed first (anything but a regular file is never opened), opened non-blocking,
checked again on the descriptor, and read up to :data:`MAX_CONFIG_BYTES`; bytes that are
not UTF-8 and arrays or inline tables nested past the parser's recursion are one error
line, not a traceback.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

MAX_CONFIG_BYTES = 1 << 20  # bnlint's own configurations are a few KB


class ConfigReadError(ValueError):
    """The file cannot be read as a configuration; the message says why."""


def read_text(path: Path) -> str:
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise ConfigReadError("not a regular file; refusing to open it")
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):  # swapped since stat
                raise ConfigReadError("not a regular file; refusing to read it")
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigReadError(f"cannot read configuration: {error.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigReadError(f"larger than {MAX_CONFIG_BYTES} bytes; not a configuration")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigReadError(f"not UTF-8 text (byte {error.start})") from None


def read_toml(path: Path) -> dict[str, Any]:
    text = read_text(path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigReadError(f"invalid TOML: {error}") from None
    except RecursionError:
        raise ConfigReadError("invalid TOML: nested too deeply") from None
