"""In-process timings, after imports: ``onnx.load`` against bnlint on the same file.

Run by ``benchmarks/scale.py``; prints one JSON object. Each task runs in its own fresh
interpreter (so one task's freed memory cannot make another's allocations cheaper: the
allocator's state moves ``onnx.load`` between 25 and 120 ms on a 100 MB file): one
warm-up call (imports, the rule registry), then ``REPS`` timed calls, median. Tasks:
``onnx.load(M)``; bnlint's own work (``load_model`` + ``lint_graph``); and
``bnlint.lint(M)``, the public API, which adds the report's provenance (the file's sha256).

    python benchmarks/inprocess.py MODEL [REPS]
"""

from __future__ import annotations

import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def task(name: str, model: str, reps: int) -> float:
    import onnx

    from bnlint.api import SettingsResolver, lint
    from bnlint.engine import lint_graph
    from bnlint.loaders import load_model

    resolver = SettingsResolver({})
    settings, ruleset = resolver.resolve(model)

    def engine() -> int:
        return len(lint_graph(load_model(model, settings), settings, ruleset).findings)

    call = {"onnx_load": lambda: onnx.load(model), "api_lint": lambda: lint(model)}.get(
        name, engine
    )
    call()
    times = []
    for _ in range(reps):
        gc.collect()
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    model = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    if len(sys.argv) > 3:
        print(json.dumps(task(sys.argv[3], model, reps)))
        return
    found = {}
    for _rep in range(2):  # interleaved, each task in a fresh process, best of two
        for name in ("onnx_load", "engine", "api_lint"):
            output = subprocess.run(
                [sys.executable, __file__, model, str(reps), name],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            value = json.loads(output.strip().splitlines()[-1])
            found[name] = min(found.get(name, value), value)
    print(json.dumps(found))


if __name__ == "__main__":
    main()
