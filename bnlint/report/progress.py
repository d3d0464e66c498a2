"""A progress bar on stderr for long runs over many models; silent everywhere else.

Shown only when the stream is a terminal, there is more than one model, and the run has
already taken longer than ``delay`` seconds: short runs, pipes and CI logs never see it.
The line is erased when the run ends, so the report that follows starts clean.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import IO

from bnlint.report.sanitize import printable

WIDTH = 28


class Progress:
    def __init__(
        self,
        total: int,
        stream: IO[str],
        *,
        delay: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.stream = stream
        self.delay = delay
        self.clock = clock
        self.done = 0
        self.started = clock()
        self.shown = False
        isatty = getattr(stream, "isatty", None)
        self.enabled = total > 1 and bool(isatty and isatty())

    def advance(self, label: str = "") -> None:
        self.done += 1
        if not self.enabled or self.clock() - self.started < self.delay:
            return
        filled = WIDTH * self.done // max(self.total, 1)
        bar = "█" * filled + "░" * (WIDTH - filled)
        name = printable(label, 40)
        self.stream.write(f"\r\x1b[2K{bar} {self.done}/{self.total} {name}")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.shown = False
