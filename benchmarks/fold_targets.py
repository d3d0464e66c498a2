"""Whole-process time of ``bnlint fold`` on ResNet-50 against the ``onnx.load`` floor.

Usage (from the repository root)::

    python benchmarks/fold_targets.py            # 5 rounds, prints the table
    python benchmarks/fold_targets.py --reps 3

The model is the standard ResNet-50 at 224x224 with its 53 BatchNorms
(``benchmarks/bench_models.py``, 102 MB, rebuilt from a seed when missing). One round
runs the floor ``python -c "import onnx; onnx.load(M)"``, then ``bnlint fold M -o F
--algebraic-only``, then ``bnlint fold M -o F``, one after the other, so the three share
whatever load the machine has at that moment; the figures are medians over the rounds of
the wall time and of the CPU time (user + system, from the child's rusage) and the ratios
are taken per round before the median. The load average is read before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

TARGETS = {"fold-algebraic": 3.0, "fold": 6.0}
LABELS = {
    "floor": '`python -c "import onnx; onnx.load(M)"` (floor)',
    "fold-algebraic": "`bnlint fold M -o F --algebraic-only`",
    "fold": "`bnlint fold M -o F` (both levels, model outputs)",
}


def _run(command: list[str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one child process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def measure(reps: int) -> dict:
    import bench_models

    model = str(bench_models.resnet50())
    out = ROOT / "benchmarks" / "models" / "resnet50-224.folded.onnx"
    python = sys.executable
    fold = [python, "-m", "bnlint", "fold", model, "-o", str(out)]
    commands = {
        "floor": [python, "-c", f"import onnx; onnx.load({model!r})"],
        "fold-algebraic": [*fold, "--algebraic-only"],
        "fold": fold,
    }
    _run(commands["floor"])  # warm the page cache and the bytecode caches once
    rounds: list[dict[str, tuple[float, float]]] = []
    load_before = os.getloadavg()
    for _ in range(reps):
        rounds.append({key: _run(command) for key, command in commands.items()})
    load_after = os.getloadavg()
    out.unlink(missing_ok=True)
    found: dict = {"reps": reps, "load": (load_before, load_after), "runs": {}}
    for key in commands:
        walls = [r[key][0] for r in rounds]
        cpus = [r[key][1] for r in rounds]
        found["runs"][key] = {
            "wall": statistics.median(walls),
            "cpu": statistics.median(cpus),
            "wall_ratio": statistics.median(r[key][0] / r["floor"][0] for r in rounds),
            "cpu_ratio": statistics.median(r[key][1] / r["floor"][1] for r in rounds),
            "walls": walls,
        }
    return found


def table(found: dict) -> list[str]:
    before, after = found["load"]
    lines = [
        f"### Targets (ResNet-50 at 224x224, whole process, {found['reps']} interleaved "
        "rounds, medians)",
        "",
        f"Load average (1/5/15 min) {before[0]:.1f}/{before[1]:.1f}/{before[2]:.1f} before, "
        f"{after[0]:.1f}/{after[1]:.1f}/{after[2]:.1f} after, on {os.cpu_count()} cores. "
        "Ratios are per round (floor and bnlint measured back to back), then the median.",
        "",
        "| run | wall (s) | ÷ floor (wall) | CPU (s) | ÷ floor (CPU) | target | |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for key, label in LABELS.items():
        run = found["runs"][key]
        if key == "floor":
            lines.append(f"| {label} | {run['wall']:.2f} | 1.00 | {run['cpu']:.2f} | 1.00 | | |")
            continue
        target = TARGETS[key]
        met = "met" if run["wall_ratio"] <= target else "**not met**"
        lines.append(
            f"| {label} | {run['wall']:.2f} | {run['wall_ratio']:.2f}× | {run['cpu']:.2f} | "
            f"{run['cpu_ratio']:.2f}× | ≤ {target:g}× | {met} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved rounds (default 5)")
    args = parser.parse_args()
    found = measure(args.reps)
    print("\n".join(table(found)))
    for key, run in found["runs"].items():
        print(f"{key}: walls {', '.join(f'{w:.2f}' for w in run['walls'])}", file=sys.stderr)


if __name__ == "__main__":
    main()
