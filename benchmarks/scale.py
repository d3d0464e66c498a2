"""bnlint against the cost of reading the model, side by side in one run (``make bench``).

Every number is a ratio to an anchor measured in the same run on the same file: the
floor is ``python -c "import onnx; onnx.load(M)"``. Commands run as separate processes,
interleaved (one repetition runs every command once), and the median of the repetitions
is reported with the process's peak RSS. Peer tools that exceed ``--cap`` seconds are
stopped and reported as "> cap" (and not retried). Models are generated with seeded
weights into ``benchmarks/models/scale/`` (git-ignored; see ``bench_models.py``).

    python benchmarks/scale.py              # measure, print, rewrite BENCHMARKS.md sections
    python benchmarks/scale.py --no-write   # print only
    python benchmarks/scale.py --reps 1 --skip-peers   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import bench_models  # noqa: E402
import bench_report  # noqa: E402

PY = sys.executable
CHAIN_SIZES = (2_250, 9_000, 36_000, 144_000)
CHAIN = 36_000
HEAVY_PEER_SECONDS = 20.0


@dataclass
class Case:
    """One command measured in every repetition (unless it timed out once)."""

    key: str
    argv: list[str]
    cap: float
    peer: bool = False
    ok: tuple[int, ...] = (0, 1)  # exit codes that count as a run (lint exits 1 on findings)
    times: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    timed_out: bool = False
    failed: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.times) if self.times else None


GNU_TIME = "/usr/bin/time"


def run(
    argv: list[str],
    cap: float,
    ok: tuple[int, ...] = (0, 1),
    cwd: Path = ROOT,
    env: dict[str, str] | None = None,
) -> tuple[float | None, float, str | None]:
    """(seconds or None on timeout, peak RSS in MB, error) of one process run.

    Peak RSS comes from GNU time when present: a child's own ``ru_maxrss`` would include
    this (larger) process, which it was forked from. The run gets its own process group,
    so a timeout stops the command itself, not only the GNU time wrapper.
    """
    with (
        tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file,
        tempfile.TemporaryFile("w+b") as stderr,
    ):
        prefix = [GNU_TIME, "-f", "%M", "-o", rss_file.name] if os.path.exists(GNU_TIME) else []
        start = time.perf_counter()
        process = subprocess.Popen(
            [*prefix, *argv],
            cwd=cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env if env is not None else _env(),
            start_new_session=True,
        )
        try:
            process.wait(timeout=cap)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return None, 0.0, None
        seconds = time.perf_counter() - start
        text = rss_file.read().strip().splitlines()
        stderr.seek(0)
        lines = [line for line in stderr.read().decode(errors="replace").splitlines() if line]
    rss = float(text[-1]) / 1024 if text and text[-1].isdigit() else 0.0
    lines = [line for line in lines if not line.startswith("Command exited with non-zero")]
    code = process.returncode
    error = None if code in ok else (lines or [f"exit {code}"])[-1]
    return seconds, rss, error


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def _py(code: str) -> list[str]:
    return [PY, "-c", code]


def _bnlint(*args: str) -> list[str]:
    return [PY, "-m", "bnlint", *args]


def _has(module: str) -> bool:
    from importlib.util import find_spec

    return find_spec(module) is not None


def build_cases(models: dict[str, Path], out: Path, cap: float, peers: bool) -> list[Case]:
    resnet, tiny = str(models["resnet50"]), str(models["tiny"])
    external, folder = str(models["external"]), str(models["resnet18-folder"])
    cases = [
        Case("import-onnx", _py("import onnx"), cap),
        Case("version", _bnlint("--version"), cap),
        Case("tiny", _bnlint(tiny, "-q"), cap),
    ]
    for name in ("resnet50", *(f"chain-{n}" for n in CHAIN_SIZES)):
        model = str(models[name])
        cases += [
            Case(f"{name}:floor", _py(f"import onnx; onnx.load({model!r})"), cap),
            Case(f"{name}:lint", _bnlint(model, "-q"), cap),
        ]
    chain = str(models[f"chain-{CHAIN}"])
    cases += [
        Case("resnet50:lint-bn003", _bnlint(resnet, "-q", "--select", "BN003"), cap),
        Case(f"chain-{CHAIN}:lint-bn003", _bnlint(chain, "-q", "--select", "BN003"), cap),
        Case("resnet50:networkx", _py(_NETWORKX.format(model=resnet)), cap),
        Case(f"chain-{CHAIN}:networkx", _py(_NETWORKX.format(model=chain)), cap),
        Case("resnet50:checker", _py(f"import onnx; onnx.checker.check_model({resnet!r})"), cap),
    ]
    for name in ("resnet50", f"chain-{CHAIN}", "chain-9000"):
        model = str(models[name])
        folded = str(out / f"{name}.folded.onnx")
        cases += [
            Case(
                f"{name}:fold-algebraic",
                _bnlint("fold", model, "-o", folded, "--algebraic-only"),
                cap,
                ok=(0,),
            ),
            Case(
                f"{name}:fold",
                _bnlint("fold", model, "-o", str(out / f"{name}.f2.onnx")),
                cap,
                ok=(0,),
            ),
        ]
    cases += [
        Case("external:floor", _py(f"import onnx; onnx.load({external!r})"), cap),
        Case(
            "external:floor-no-data",
            _py(f"import onnx; onnx.load({external!r}, load_external_data=False)"),
            cap,
        ),
        Case("external:lint", _bnlint(external, "-q"), cap),
        Case("external:lint-no-bn013", _bnlint(external, "-q", "--ignore", "BN013"), cap),
        Case("folder:one", _bnlint(str(min(Path(folder).glob("*.onnx"))), "-q"), cap),
        Case("folder:j1", _bnlint(folder, "-q", "-j", "1"), cap),
        Case("folder:j2", _bnlint(folder, "-q", "-j", "2"), cap),
    ]
    if not peers:
        return cases
    for name in ("resnet50", f"chain-{CHAIN}"):
        model = str(models[name])
        target = str(out / f"{name}.peer.onnx")
        cases += [
            Case(
                f"{name}:onnxoptimizer",
                _py(_OPTIMIZER.format(model=model, out=target)),
                cap,
                peer=True,
            ),
            Case(f"{name}:onnxsim", _py(_ONNXSIM.format(model=model, out=target)), cap, peer=True),
            Case(f"{name}:ort-session", _py(_SESSION.format(model=model)), cap, peer=True),
        ]
    polygraphy = Path(PY).parent / "polygraphy"
    if polygraphy.exists() and _has("onnx_graphsurgeon"):
        cases.append(
            Case(
                "resnet50:polygraphy",
                [str(polygraphy), "check", "lint", resnet],
                cap,
                peer=True,
            )
        )
    return cases


_NETWORKX = (
    "import onnx, networkx as nx\n"
    "m = onnx.load({model!r})\n"
    "g = nx.MultiDiGraph()\n"
    "producer = {{o: i for i, n in enumerate(m.graph.node) for o in n.output}}\n"
    "g.add_nodes_from(range(len(m.graph.node)))\n"
    "g.add_edges_from((producer[t], i, t) for i, n in enumerate(m.graph.node)"
    " for t in n.input if t in producer)"
)
_OPTIMIZER = (
    "import onnx, onnxoptimizer\n"
    "onnx.save(onnxoptimizer.optimize(onnx.load({model!r}), ['fuse_bn_into_conv']), {out!r})"
)
_ONNXSIM = (
    "import onnx, onnxsim\nm, ok = onnxsim.simplify(onnx.load({model!r}))\nonnx.save(m, {out!r})"
)
_SESSION = (
    "import onnxruntime as ort\nso = ort.SessionOptions()\n"
    "so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL\n"
    "ort.InferenceSession({model!r}, so, providers=['CPUExecutionProvider'])"
)


def measure(cases: list[Case], reps: int) -> None:
    for rep in range(reps):
        for case in cases:
            if case.timed_out or case.failed:
                continue
            if case.peer and case.times and case.times[0] > HEAVY_PEER_SECONDS:
                continue  # one run of a peer that takes minutes says enough
            seconds, rss, error = run(case.argv, case.cap, (0,) if case.peer else case.ok)
            if error:
                case.failed = error
            elif seconds is None:
                case.timed_out = True
            else:
                case.times.append(seconds)
                case.rss_mb.append(rss)
            shown = "timeout" if seconds is None else f"{seconds:7.2f}s {rss:7.0f} MB"
            print(f"[{rep + 1}/{reps}] {case.key:<34} {shown}", file=sys.stderr, flush=True)


def inprocess(model: Path, reps: int) -> dict[str, float]:
    result = subprocess.run(
        [PY, str(ROOT / "benchmarks" / "inprocess.py"), str(model), str(reps)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


SAVED = ROOT / "benchmarks" / "out" / "scale-results.json"


def save_results(results: dict[str, Case], extra: dict, args: argparse.Namespace) -> None:
    SAVED.parent.mkdir(parents=True, exist_ok=True)
    cases = {key: {**vars(case)} for key, case in results.items()}
    payload = {"cases": cases, "extra": extra, "args": {"reps": args.reps, "cap": args.cap}}
    SAVED.write_text(json.dumps(payload, indent=1))


def load_results() -> tuple[dict[str, Case], dict, dict]:
    payload = json.loads(SAVED.read_text())
    results = {key: Case(**fields) for key, fields in payload["cases"].items()}
    return results, payload["extra"], payload["args"]


def _byte_compile() -> None:
    """Measure bnlint as installed: ``pip install`` writes every module's bytecode."""
    import compileall

    for folder in (ROOT / "bnlint", ROOT / "rules"):
        compileall.compile_dir(str(folder), quiet=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cap", type=float, default=60.0, help="seconds before a run is stopped")
    parser.add_argument("--skip-peers", action="store_true", help="no onnxoptimizer/onnxsim/…")
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--render-only", action="store_true", help=f"re-render the last run ({SAVED.name})"
    )
    args = parser.parse_args()
    print("generating models (first run only) …", file=sys.stderr, flush=True)
    models = bench_models.generate_all(CHAIN_SIZES)
    if args.render_only:
        results, extra, saved_args = load_results()
        args.reps, args.cap = saved_args["reps"], saved_args["cap"]
    else:
        _byte_compile()
        load_before = os.getloadavg()[0]
        with tempfile.TemporaryDirectory(prefix="bnlint-bench-") as scratch:
            out = Path(scratch)
            cases = build_cases(models, out, args.cap, not args.skip_peers)
            measure(cases, args.reps)
            results = {case.key: case for case in cases}
            extra = {
                "inprocess": inprocess(models["resnet50"], max(5, 2 * args.reps + 1)),
                "accuracy": bench_report.fold_accuracy(models, out),
                "load": [load_before, os.getloadavg()[0]],
                "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            }
        save_results(results, extra, args)
    text = bench_report.render(results, extra, models, args)
    print(text)
    if not args.no_write:
        bench_report.write_sections(ROOT / "BENCHMARKS.md", text)


if __name__ == "__main__":
    main()
