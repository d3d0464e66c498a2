"""Where bnlint may write, and how: one guard for every command that writes a file.

:func:`check_output_target` decides, before anything is written, what an output path is:

- the same file (device and inode, through symlinks and hard links) as a model read or a
  file a model references (ONNX external data), or a configuration file: refused;
- one of this process's own descriptors (``/dev/stdout``, ``/dev/fd/N``,
  ``/proc/self/fd/N``): written to that descriptor, where the shell sent it;
- an existing character device (``/dev/null``, a terminal) or a FIFO with a reader:
  written in place, never replaced by a regular file; a FIFO without a reader, a block
  device, a socket or a folder: refused;
- anything else (a regular file, a new path, a symlink to a regular file): written
  atomically — a temporary file created exclusively (``O_EXCL``, mode 0600) in the same
  folder, then renamed over the target, so a planted symlink is replaced rather than
  written through and a failure leaves nothing behind. An existing file holding binary
  data (NUL bytes) is never replaced by a report.

Every refusal is a :class:`UnsafeOutput` whose message completes ``<path>: ...``.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SNIFF_BYTES = 4096
_MAX_LINK_HOPS = 40  # the kernel's own limit on symlinks in one lookup
_OWN_DESCRIPTOR = re.compile(r"^/(?:dev/fd|proc/(?P<pid>self|thread-self|\d+)/fd)/(?P<fd>\d+)$")

REPLACE, IN_PLACE, DESCRIPTOR = "replace", "in place", "descriptor"


class UnsafeOutput(Exception):
    """An output path bnlint refuses to write; ``str()`` completes ``<path>: ...``."""


@dataclass(frozen=True)
class OutputTarget:
    """A checked output path and how it is written (see the module docstring)."""

    path: Path
    how: str  # REPLACE | IN_PLACE | DESCRIPTOR
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) checked, for IN_PLACE/DESCRIPTOR
    descriptor: int | None = None  # DESCRIPTOR: this process's own; IN_PLACE: opened and held

    @property
    def replaceable(self) -> bool:
        """True when the target is (or will be) a regular file renamed into place."""
        return self.how == REPLACE


def _identities(path: str | os.PathLike[str]) -> set[tuple[int, int]]:
    """(device, inode) of ``path`` and, when it is a symlink, of what it points to."""
    found = set()
    for status in (os.lstat, os.stat):
        try:
            info = status(path)
        except (OSError, ValueError):
            continue
        found.add((info.st_dev, info.st_ino))
    return found


def input_identities(inputs: Iterable[str | os.PathLike[str]]) -> dict[tuple[int, int], str]:
    """(device, inode) -> the input's path, for every input that exists."""
    found: dict[tuple[int, int], str] = {}
    for item in inputs:
        for identity in _identities(item):
            found.setdefault(identity, os.fspath(item))
    return found


def own_descriptor(target: str) -> int | None:
    """The descriptor N when ``target`` names ``/dev/fd/N`` or ``/proc/self/fd/N``, directly
    or through symlinks (``/dev/stdout -> /proc/self/fd/1``)."""
    path = os.path.abspath(target)
    for _ in range(_MAX_LINK_HOPS):
        match = _OWN_DESCRIPTOR.match(path)
        pid = match and match.group("pid")
        if match and (pid is None or not pid.isdigit() or int(pid) == os.getpid()):
            return int(match.group("fd"))
        if not os.path.islink(path):
            return None
        try:
            link = os.readlink(path)
        except OSError:
            return None
        path = os.path.normpath(os.path.join(os.path.dirname(path), link))
    return None


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_output_target(
    target: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]
) -> OutputTarget:
    """Decide how ``target`` is written, or raise :class:`UnsafeOutput`.

    ``inputs`` are the files the command read: the models, every file they reference
    (external data) and configuration files. Nothing is created or truncated here; an
    existing device or FIFO is opened (without blocking) and held for
    :func:`write_output`, or released with :func:`discard`.
    """
    path = os.fspath(target)
    read = input_identities(inputs)
    descriptor = own_descriptor(path)
    if descriptor is not None:
        try:
            info = os.fstat(descriptor)
        except OSError:
            raise UnsafeOutput(f"file descriptor {descriptor} is not open") from None
        _refuse_inputs({(info.st_dev, info.st_ino)}, read)
        return OutputTarget(Path(path), DESCRIPTOR, (info.st_dev, info.st_ino), descriptor)
    _refuse_inputs(_identities(path), read)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return OutputTarget(Path(path), REPLACE)  # new, or a dangling symlink replaced
    except OSError as error:
        raise UnsafeOutput(f"cannot write: {error.strerror or error}") from None
    if stat.S_ISREG(info.st_mode):
        _refuse_binary(path)
        return OutputTarget(Path(path), REPLACE)
    if not (stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode)):
        raise UnsafeOutput(f"is {_kind(info.st_mode)}; refusing to write to it")
    # Opened now and held until written: a FIFO's reader would see end-of-file if a probe
    # closed it, and opening a FIFO without O_NONBLOCK waits for a reader forever.
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise UnsafeOutput("is a FIFO (named pipe) with no reader") from None
        raise UnsafeOutput(f"cannot write: {error.strerror or error}") from None
    opened = os.fstat(descriptor)
    if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
        os.close(descriptor)
        raise UnsafeOutput("changed while it was checked; nothing written")
    return OutputTarget(Path(path), IN_PLACE, (info.st_dev, info.st_ino), descriptor)


def refuse_input_target(
    target: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]
) -> None:
    """Raise :class:`UnsafeOutput` when ``target`` is one of ``inputs`` (opens nothing)."""
    read = input_identities(inputs)
    descriptor = own_descriptor(os.fspath(target))
    if descriptor is not None:
        try:
            info = os.fstat(descriptor)
        except OSError:
            return
        _refuse_inputs({(info.st_dev, info.st_ino)}, read)
    else:
        _refuse_inputs(_identities(target), read)


def _refuse_inputs(found: set[tuple[int, int]], read: dict[tuple[int, int], str]) -> None:
    for identity in found:
        if identity in read:
            raise UnsafeOutput(
                f"is the same file as the input {read[identity]}; refusing to overwrite it"
            )


def _refuse_binary(path: str) -> None:
    """Refuse an existing regular file holding binary data (NUL bytes in its first 4 KB).

    Opened without blocking and read only if it is (still) a regular file.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return  # unreadable: the write decides
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return
        head = os.read(descriptor, _SNIFF_BYTES)
    finally:
        os.close(descriptor)
    if b"\0" in head:
        raise UnsafeOutput("it holds binary data (a model?); refusing to replace it with a report")


def write_output(target: OutputTarget, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to a checked target. Raises OSError or UnsafeOutput."""
    payload = data if isinstance(data, bytes) else _encode(data)
    if target.how == REPLACE:
        _replace(target.path, payload)
    elif target.how == DESCRIPTOR:
        assert target.descriptor is not None
        info = os.fstat(target.descriptor)
        if (info.st_dev, info.st_ino) != target.identity:
            raise UnsafeOutput("changed since it was checked; nothing written")
        if target.descriptor in (1, 2):
            (sys.stdout if target.descriptor == 1 else sys.stderr).flush()
        _write_all(target.descriptor, payload)
    else:
        assert target.descriptor is not None
        try:
            os.set_blocking(target.descriptor, True)
            _write_all(target.descriptor, payload)
        finally:
            os.close(target.descriptor)


def discard(target: OutputTarget) -> None:
    """Release a checked target that will not be written (closes a held device or FIFO)."""
    if target.how == IN_PLACE and target.descriptor is not None:
        os.close(target.descriptor)


def _encode(text: str) -> bytes:
    # A path from the command line may hold undecodable bytes (surrogate escapes): write
    # them as visible escapes rather than fail after the lint.
    return text.encode("utf-8", errors="backslashreplace")


def _write_all(descriptor: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        view = view[os.write(descriptor, view) :]


def _replace(target: Path, payload: bytes) -> None:
    folder = target.parent if str(target.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(payload)
        os.chmod(temporary, _mode_for(target))
        # A device or FIFO swapped in since the check is never replaced.
        try:
            current = os.lstat(target)
        except FileNotFoundError:
            current = None
        if current is not None and not (
            stat.S_ISREG(current.st_mode) or stat.S_ISLNK(current.st_mode)
        ):
            raise UnsafeOutput(f"is {_kind(current.st_mode)}; refusing to replace it")
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


def write_atomic(
    path: str | Path, text: str, inputs: Iterable[str | os.PathLike[str]] = ()
) -> None:
    """Check ``path`` against ``inputs`` and write ``text`` to it (see the module docstring).

    Raises OSError (a refusal is an ``OSError`` with ``strerror`` set to the reason).
    """
    try:
        write_output(check_output_target(path, inputs), text)
    except UnsafeOutput as error:
        raise OSError(errno.EEXIST, str(error)) from None
