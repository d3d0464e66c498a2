"""Wall time and peak memory of bnlint on the resource attacks of issue 12, before and after.

    python benchmarks/hostile_costs.py                      # this checkout only
    git worktree add --detach /tmp/before b2513ec           # the code before the fixes
    python benchmarks/hostile_costs.py --before /tmp/before

Each model of ``tests/hostile/bounded_models.py`` is linted once per checkout (``-q``) by a
fresh interpreter that imports bnlint from that checkout (the editable-install finder is
removed so the checkout's own files are used), under a 6 GB address-space limit and a
90-second timeout. Peak resident memory is the process's own ``ru_maxrss`` (``wait4``);
onnx's shape inference runs in a child whose memory is bounded separately.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.hostile import bounded_models  # noqa: E402

CAP = 6 * 1024**3
TIMEOUT = 90.0


def _shim(tree: Path) -> str:
    return (
        "import sys; sys.meta_path[:] = [f for f in sys.meta_path "
        "if 'editable' not in repr(f).lower()]; "
        f"sys.path.insert(0, {str(tree)!r}); sys.argv[0] = 'bnlint'; "
        "from bnlint.cli import main; main()"
    )


def run(tree: Path, model: Path) -> str:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (CAP, CAP))

    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-c", _shim(tree), str(model), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=limit,
    )
    while time.monotonic() - started < TIMEOUT:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            seconds = time.monotonic() - started
            code = os.waitstatus_to_exitcode(status)
            assert process.stderr is not None
            lines = process.stderr.read().decode().strip().splitlines()
            line = f"; {lines[-1][:80]}" if lines else ""
            return f"exit {code}, {seconds:.1f} s, peak {usage.ru_maxrss // 1024} MiB{line}"
        time.sleep(0.05)
    process.kill()
    _, _, usage = os.wait4(process.pid, 0)
    return f"killed after {TIMEOUT:.0f} s, peak {usage.ru_maxrss // 1024} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="a checkout of the code to compare with")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bnlint-hostile-costs-"))
    cases = {
        "einsum (two '...' in a term)": bounded_models.einsum(folder / "einsum.onnx"),
        "ConstantOfShape([10**7]) -> Concat": bounded_models.value_sized_concat(
            folder / "cos.onnx", length=10**7
        ),
        "Concat of one 512 KiB constant x 4000": bounded_models.repeated_concat(folder / "rc.onnx"),
        "functions doubling over 40 levels": bounded_models.doubling_functions(folder / "fn.onnx"),
        "name_scopes metadata 2 x 12 MB": bounded_models.huge_name_scopes(folder / "ns.onnx"),
    }
    trees = [("after", REPO)] + ([("before", args.before)] if args.before else [])
    for name, path in cases.items():
        for label, tree in trees:
            print(f"{name} ({path.stat().st_size} bytes), {label}: {run(tree, path)}", flush=True)


if __name__ == "__main__":
    main()
