"""What a hostile case is: the path to pass to bnlint and what bnlint must do with it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class HostileCase:
    path: Path  # what goes on the command line
    outcome: str  # "refused" | "linted"
    problem: str = ""  # refused: a substring of the one error line
    codes: frozenset[str] = frozenset()  # linted: codes that must be reported
    exit_code: int = 2
    args: list[str] = field(default_factory=list)  # extra command-line arguments
    marker: Path | None = None  # appears only if code from the file ran
    torch: bool = False  # reading it needs PyTorch (a larger address space)
    expected_seconds: float = 2.0  # a generous typical run; the timeout is ten times this


def refused(path: Path, problem: str, **kwargs) -> HostileCase:
    return HostileCase(path, "refused", problem=problem, **kwargs)


def linted(path: Path, *codes: str, exit_code: int = 1, **kwargs) -> HostileCase:
    return HostileCase(path, "linted", codes=frozenset(codes), exit_code=exit_code, **kwargs)
