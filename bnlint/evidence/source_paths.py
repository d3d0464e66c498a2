"""Python source paths in findings, as the repository spells them.

A PyTorch model records the source file of each module call as the exporting machine saw
it (``/home/alice/proj/models/net.py``). Reports are read in a checkout of the repository,
on CI and in code scanning, where that path means nothing: a path inside the repository
becomes relative to its root, and a path of another machine becomes the longest tail of
it that names a file in the repository (``models/net.py``). A path matching nothing is
kept as it was. Only ``stat`` is used: nothing is read or run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from bnlint.findings import Finding

MAX_PARTS = 32  # tails tried for a foreign path: a bound on stat calls


def _parts(source: str) -> tuple[str, ...]:
    path: PurePath = PureWindowsPath(source) if "\\" in source else PurePosixPath(source)
    return tuple(part for part in path.parts if part not in (path.anchor, "/", "\\"))


def repository_path(source: str, root: Path) -> str | None:
    """``source`` relative to ``root`` (POSIX separators), or None if it is not there."""
    if not source or source.startswith("<"):  # <string>, <frozen …>
        return None
    candidate = Path(source)
    if candidate.is_absolute():
        try:
            return candidate.resolve().relative_to(root).as_posix()
        except (ValueError, OSError, RuntimeError):
            pass
    parts = _parts(source)
    for start in range(max(0, len(parts) - MAX_PARTS), len(parts)):  # longest tail first
        tail = PurePosixPath(*parts[start:])
        try:
            if (root / tail).is_file():
                return tail.as_posix()
        except OSError:
            continue
    return None


def relative_sources(findings: Iterable[Finding], root: Path) -> list[Finding]:
    """``findings`` with ``location.source_file`` relative to ``root`` where it resolves."""
    resolved: dict[str, str | None] = {}
    out = []
    for finding in findings:
        source = finding.location.get("source_file")
        if isinstance(source, str) and source:
            if source not in resolved:
                resolved[source] = repository_path(source, root)
            if resolved[source] is not None and resolved[source] != source:
                location = {**finding.location, "source_file": resolved[source]}
                finding = replace(finding, location=location)
        out.append(finding)
    return out
