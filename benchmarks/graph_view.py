"""What ``ModelGraph.nx`` costs, and that linting does not pay for it (issue 17).

Two measurements on the generated scale models (``bench_models.py``):

- lint time, ``bnlint M -q --exit-zero`` and the same with ``--report-html`` (the report
  that used to build the networkx graph for its node neighbourhoods), each a separate
  process, this checkout interleaved with ``--base DIR`` (a checkout before the change,
  e.g. ``git archive <commit> | tar -x -C DIR``); median of ``--reps``;
- in process, what a plug-in pays the first time it asks for ``graph.nx``: the deferred
  shape inference its edge shapes need (paid once per model by whichever rule first reads
  a shape), building the view, then one ``networkx.ancestors`` query of the last
  BatchNorm; the median of ``--reps`` fresh loads.

    python benchmarks/graph_view.py --base /tmp/base            # print both tables
    python benchmarks/graph_view.py --view-only                 # the in-process table only
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import bench_models  # noqa: E402
import scale  # noqa: E402

MODELS = ("resnet50", "chain-36000", "chain-144000")


def _model(name: str) -> Path:
    return bench_models.resnet50() if name == "resnet50" else bench_models.chain(int(name[6:]))


def lint_times(base: Path, models: dict[str, Path], reps: int) -> dict[tuple, list[float]]:
    """``{(model, mode, checkout): [seconds]}``, every command once per repetition."""
    times: dict[tuple, list[float]] = {}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(reps):
            for name, path in models.items():
                for mode, extra in (("text", []), ("html", ["--report-html", f"{out}/r.html"])):
                    for checkout, root in (("base", base), ("this", ROOT)):
                        env = {**scale._env(), "PYTHONPATH": str(root)}
                        argv = [sys.executable, "-m", "bnlint", str(path), "-q", "--exit-zero"]
                        seconds, _, error = scale.run([*argv, *extra], 600, cwd=Path(out), env=env)
                        if error or seconds is None:
                            raise SystemExit(f"{checkout} {name} {mode}: {error or 'timeout'}")
                        times.setdefault((name, mode, checkout), []).append(seconds)
    return times


def view_cost(path: Path, reps: int) -> tuple[int, float, float, float]:
    """(nodes, then the median seconds of: every tensor's shape and dtype, building
    graph.nx once they are known, one ancestors query)."""
    import networkx

    from bnlint.config import Settings
    from bnlint.loaders import load_model

    runs = []
    for _ in range(reps):
        graph = load_model(str(path), Settings())
        start = time.perf_counter()
        for name in graph.tensors:
            graph.shape(name), graph.dtype(name)
        shapes = time.perf_counter() - start
        start = time.perf_counter()
        view = graph.nx
        built = time.perf_counter() - start
        start = time.perf_counter()
        networkx.ancestors(view, graph.nodes_of("batch_norm")[-1].id)
        runs.append((shapes, built, time.perf_counter() - start))
    return (len(graph), *(statistics.median(column) for column in zip(*runs, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, help="checkout before the change")
    parser.add_argument("--view-only", action="store_true", help="only the in-process table")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    models = {name: _model(name) for name in args.models}
    views = {name: view_cost(path, args.reps) for name, path in models.items()}
    if not args.view_only:
        if args.base is None:
            parser.error("--base DIR is required unless --view-only")
        lint_table(lint_times(args.base.resolve(), models, args.reps), views)
    print("\n| model | nodes | shapes and dtypes (s) | build graph.nx (s) | ancestors query (s) |")
    print("|---|---:|---:|---:|---:|")
    for name, (nodes, shapes, built, query) in views.items():
        print(f"| {name} | {nodes:,} | {shapes:.3f} | {built:.3f} | {query:.4f} |")


def lint_table(times: dict[tuple, list[float]], views: dict[str, tuple]) -> None:
    print("| model | nodes | report | before (s) | after (s) | after ÷ before |")
    print("|---|---:|---|---:|---:|---:|")
    for name in views:
        for mode in ("text", "html"):
            before = statistics.median(times[(name, mode, "base")])
            after = statistics.median(times[(name, mode, "this")])
            cells = [name, f"{views[name][0]:,}", mode, f"{before:.2f}", f"{after:.2f}"]
            print("| " + " | ".join(cells) + f" | {after / before:.2f}× |")


if __name__ == "__main__":
    main()
