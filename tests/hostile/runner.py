"""Run the real ``bnlint`` executable on an attack, the way a user's shell or CI would.

:func:`run_attack` starts one process (the venv's ``bnlint`` console script, or another
command such as ``python -m bnlint.reproduce``) with:

- its own ``HOME`` and ``TMPDIR`` inside the test's folder (both must stay empty);
- an address-space limit (``setrlimit(RLIMIT_AS)`` in ``preexec_fn``) and a timeout of
  ten times a generous expected duration (killed after that: ``returncode`` is None); its
  peak resident memory is read with ``wait4`` (``peak_mib``);
- an optional SIGINT sent after a delay (Ctrl-C in a terminal).

Every entry below the watched folders is fingerprinted before and after (mode, size,
mtime and, for files up to 64 MB, sha256; symlinks not followed, FIFOs and devices never
opened), so :func:`problems` can say whether an input changed or a file appeared that is
not one of the allowed outputs, whether the marker file (written only if code from an
attacker's file ran) exists, and whether stderr is exactly the expected one error line.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ONNX_ADDRESS_SPACE = 3 * 1024**3
TORCH_ADDRESS_SPACE = 6 * 1024**3
HASHED_BYTES = 64 * 1024**2  # larger (sparse) files are compared by size and mtime only
SKIPPED_DIRS = {"__pycache__", ".git", ".pytest_cache", ".ruff_cache", ".hypothesis"}
BNLINT = [str(Path(sys.executable).with_name("bnlint"))]  # the installed console script
REPRODUCE = [sys.executable, "-m", "bnlint.reproduce"]


def fingerprint(roots: Sequence[Path], skipped: set[str] = SKIPPED_DIRS) -> dict[str, tuple]:
    """Every entry below ``roots`` (symlinks not followed; FIFOs and devices never opened)."""
    found: dict[str, tuple] = {}
    for root in roots:
        for folder, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = [d for d in dirnames if d not in skipped]
            for name in (*dirnames, *filenames):
                path = os.path.join(folder, name)
                info = os.lstat(path)
                if stat.S_ISDIR(info.st_mode):  # its entries are compared one by one
                    found[path] = (info.st_mode,)
                    continue
                entry: tuple = (info.st_mode, info.st_size, info.st_mtime_ns)
                regular = os.path.isfile(path) and not os.path.islink(path)
                if regular and info.st_size <= HASHED_BYTES:
                    with open(path, "rb") as handle:
                        entry += (hashlib.sha256(handle.read()).hexdigest(),)
                found[path] = entry
    return found


def address_limit(address_space: int):
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return apply


@dataclass
class Attack:
    """What one run did."""

    args: list[str]
    returncode: int | None  # None: killed at the timeout
    stdout: str
    stderr: str
    seconds: float
    changed: list[str] = field(default_factory=list)  # watched entries changed, made or gone
    home_left: list[str] = field(default_factory=list)
    peak_mib: int = 0  # the process's peak resident memory (a guard, never a measurement)

    @property
    def lines(self) -> list[str]:
        """Non-empty stderr lines, except the ones naming a report written (issue 15)."""
        return [
            line
            for line in self.stderr.splitlines()
            if line.strip() and not line.startswith("bnlint: wrote ")
        ]


def run_attack(
    args: Sequence[str | os.PathLike[str]],
    folder: Path,
    *,
    watch: Sequence[Path] = (),
    allowed: Sequence[Path] = (),
    cwd: Path | None = None,
    command: Sequence[str] = tuple(BNLINT),
    expected_seconds: float = 5.0,
    address_space: int = ONNX_ADDRESS_SPACE,
    env: dict[str, str] | None = None,
    interrupt_after: float | None = None,
) -> Attack:
    """Run ``command + args`` in ``cwd`` (default ``folder``); see the module docstring.

    ``watch`` defaults to ``folder``; ``allowed`` are the paths the run may create or
    change (the outputs it was asked to write).
    """
    home, tmp = folder / ".home", folder / ".tmp"
    for place in (home, tmp):
        place.mkdir(exist_ok=True)
    roots = list(watch) or [folder]
    skipped = SKIPPED_DIRS | {".home", ".tmp", ".streams"}
    before = fingerprint(roots, skipped)
    environment = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp)}
    for name in ("PYTHONPATH", "NO_COLOR", "FORCE_COLOR", "BNLINT_CONFIG"):
        environment.pop(name, None)
    environment.update(env or {})
    streams = folder / ".streams"
    streams.mkdir(exist_ok=True)
    argv = [*command, *(os.fspath(arg) for arg in args)]
    with (
        open(streams / "stdout", "w+b") as stdout,
        open(streams / "stderr", "w+b") as stderr,
    ):
        started = time.monotonic()
        process = subprocess.Popen(
            argv,
            cwd=cwd or folder,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=address_limit(address_space),
        )
        interrupted = interrupt_after is None
        timeout = 10 * expected_seconds
        status = None
        while status is None and time.monotonic() - started < timeout:
            if not interrupted and time.monotonic() - started >= interrupt_after:
                process.send_signal(signal.SIGINT)
                interrupted = True
            status = _reaped(process)
            if status is None:
                time.sleep(0.02)
        seconds = time.monotonic() - started
        killed = status is None
        if killed:
            process.kill()
            status = _reaped(process, block=True)
        outputs = []
        for stream in (stdout, stderr):
            stream.seek(0)
            outputs.append(stream.read().decode("utf-8", "backslashreplace"))
    after = fingerprint(roots, skipped)
    allowed_paths = {os.path.abspath(path) for path in allowed}
    changed = sorted(
        path
        for path in set(before) | set(after)
        if before.get(path) != after.get(path) and os.path.abspath(path) not in allowed_paths
    )
    return Attack(
        [os.fspath(arg) for arg in args],
        None if killed else process.returncode,
        outputs[0],
        outputs[1],
        seconds,
        changed,
        sorted(os.listdir(home)) + sorted(os.listdir(tmp)),
        peak_mib=status[1] // 1024 if status else 0,
    )


def _reaped(process: subprocess.Popen, block: bool = False) -> tuple[int, int] | None:
    """(exit code, peak resident KiB) once ``process`` ended, read with ``wait4``."""
    pid, status, usage = os.wait4(process.pid, 0 if block else os.WNOHANG)
    if pid == 0:
        return None
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss


def problems(
    attack: Attack,
    *,
    exit_code: int,
    error: str | None = None,
    markers: Sequence[Path] = (),
    stderr_lines: int | None = None,
) -> list[str]:
    """Everything wrong with ``attack`` (empty when it behaved).

    ``error``: the one stderr line must start ``bnlint: error:`` and contain this text.
    ``stderr_lines``: otherwise, how many non-empty stderr lines there may be (default 0).
    """
    if attack.returncode is None:
        return [f"killed after {attack.seconds:.0f}s (10 x the expected time)"]
    found = [f"code from an attacker's file ran: {m}" for m in markers if Path(m).exists()]
    if "Traceback" in attack.stderr:
        found.append("traceback")
    if attack.returncode != exit_code:
        found.append(f"exit {attack.returncode}, expected {exit_code}")
    lines = attack.lines
    if error is not None:
        if len(lines) != 1 or not lines[0].startswith("bnlint: error: ") or error not in lines[0]:
            found.append(f"expected one line 'bnlint: error: …{error}…', got {lines}")
    elif len(lines) != (stderr_lines or 0):
        found.append(f"{len(lines)} stderr lines, expected {stderr_lines or 0}: {lines[:3]}")
    if attack.changed:
        found.append(f"files changed or created outside the allowed outputs: {attack.changed[:4]}")
    if attack.home_left:
        found.append(f"left {attack.home_left} in HOME or TMPDIR")
    return found


def assert_behaved(attack: Attack, **expected) -> None:
    found = problems(attack, **expected)
    details = f"\n  stdout: {attack.stdout[-600:]!r}\n  stderr: {attack.stderr[-800:]!r}"
    assert not found, f"bnlint {' '.join(attack.args)}: {'; '.join(found)}{details}"
