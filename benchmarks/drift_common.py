"""Shared pieces of the drift benchmarks: BENCHMARKS.md sections, the machine, child runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
MODELS = ROOT / "benchmarks" / "models" / "drift"
BENCHMARKS = ROOT / "BENCHMARKS.md"
HEADING = "## Data drift (`--sample-data`, `bnlint recalibrate`)"


def write_section(name: str, markdown: str) -> None:
    """Replace the ``<!-- drift-NAME:start/end -->`` block of BENCHMARKS.md (append the
    drift heading and the block when missing); every other section is left as it is."""
    start, end = f"<!-- drift-{name}:start -->", f"<!-- drift-{name}:end -->"
    text = BENCHMARKS.read_text(encoding="utf-8") if BENCHMARKS.exists() else "# Benchmarks\n"
    block = f"{start}\n{markdown.rstrip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        if HEADING not in text:
            text = text.rstrip() + f"\n\n{HEADING}\n"
        text = text.rstrip() + f"\n\n{block}\n"
    BENCHMARKS.write_text(text, encoding="utf-8")


def load_note() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return ""
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cores"


def stamp() -> str:
    from benchmarks.bench_report import machine

    return (
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}; "
        f"{load_note()}."
    )


def child(script: Path, *args: str, timeout: float = 3600) -> dict[str, Any]:
    """Run ``script --child ARGS`` in a fresh interpreter; its last stdout line is JSON."""
    done = subprocess.run(
        [sys.executable, str(script), "--child", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script.name} {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
