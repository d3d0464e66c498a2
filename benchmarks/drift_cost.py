"""What the drift check costs: ResNet-50 at 224x224 against plain ONNX Runtime inference.

    python benchmarks/drift_cost.py [--reps 3] [--samples 64 1024] [--unoptimized] [--no-write]

Each measurement runs in a fresh interpreter (its peak RSS is its own). "Plain ONNX
Runtime" is an InferenceSession with default options (all graph optimizations) running the
same samples in the same batches as the drift check; the drift check is what BN021 does
after the model is loaded: open and validate the sample file, create its session, stream
every sample, compare 53 BatchNorms. Both include creating their session. The two
alternate (plain, drift, plain, drift, ...) so that a change in the machine's load hits
both; the table gives medians and the ratio of each adjacent pair. ``--unoptimized`` adds
ORT with graph optimizations off to each round. Memory: the drift check's peak RSS at 64
and 1,024 samples (616 MB of samples on disk).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.drift_common import MODELS, child, peak_rss_mib, stamp, write_section

MODEL = MODELS / "resnet50-dynamic.onnx"


def build_model() -> Path:
    if MODEL.exists():
        return MODEL
    import torch

    from tests.zoo import torch_models as tm

    MODEL.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = tm.resnet50()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, 224, 224, generator=generator)
    # Running statistics of the distribution the benchmark serves (standard normal pixels):
    # a cumulative average over 48 samples, so the check finds no drift (its usual case).
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(6):
            model(torch.randn(8, 3, 224, 224, generator=generator))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = 0.1
    staged = MODEL.with_suffix(".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            str(staged),
            dynamo=False,
            do_constant_folding=False,
            training=torch.onnx.TrainingMode.PRESERVE,
            input_names=["x"],
            dynamic_axes={"x": {0: "N"}},
        )
    staged.replace(MODEL)
    return MODEL


def build_samples(count: int) -> Path:
    path = MODELS / f"samples-{count}.npy"
    if path.exists():
        return path
    rng = np.random.default_rng(count)
    staged = path.with_suffix(".tmp.npy")
    array = np.lib.format.open_memmap(staged, "w+", np.float32, (count, 3, 224, 224))
    for start in range(0, count, 64):  # written in chunks: generating needs no 616 MB
        rows = min(64, count - start)
        array[start : start + rows] = rng.standard_normal((rows, 3, 224, 224), np.float32)
    array.flush()
    del array
    staged.replace(path)
    return path


def batch_for(samples: Path) -> int:
    from bnlint.drift.collect import BATCH_INPUT_BYTES, MAX_BATCH

    sample_bytes = 3 * 224 * 224 * 4
    return int(max(1, min(MAX_BATCH, BATCH_INPUT_BYTES // sample_bytes)))


def run_plain(samples: Path, optimize: bool) -> dict:
    import onnxruntime

    data = np.load(samples, mmap_mode="r")
    batch = batch_for(samples)
    start = time.perf_counter()
    options = onnxruntime.SessionOptions()
    if not optimize:
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = onnxruntime.InferenceSession(str(MODEL), options, providers=["CPUExecutionProvider"])
    created = time.perf_counter()
    for first in range(0, len(data), batch):
        session.run(None, {"x": np.ascontiguousarray(data[first : first + batch])})
    end = time.perf_counter()
    return {"seconds": end - start, "session": created - start, "peak_rss_mib": peak_rss_mib()}


def run_drift(samples: Path) -> dict:
    from bnlint.config import Settings
    from bnlint.drift.check import drift_profile
    from bnlint.drift.profile import Thresholds
    from bnlint.loaders import load_model

    loaded = time.perf_counter()
    graph = load_model(str(MODEL), Settings())
    start = time.perf_counter()
    profile = drift_profile(graph, samples, Thresholds())
    end = time.perf_counter()
    return {
        "seconds": end - start,
        "load": start - loaded,
        "mismatches": len(profile.mismatches),
        "layers": len(profile.layers),
        "peak_rss_mib": peak_rss_mib(),
    }


def _rounds(script: Path, reps: int, samples: str, kinds: list[str]) -> dict[str, list[dict]]:
    """``reps`` rounds, each running every kind once in turn; every other round in reverse
    order (ABBA), so that a load that rises or falls during the runs does not favour one."""
    runs: dict[str, list[dict]] = {kind: [] for kind in kinds}
    for round_ in range(reps):
        for kind in kinds if round_ % 2 == 0 else reversed(kinds):
            runs[kind].append(child(script, kind, samples))
    return runs


def _median(runs: list[dict]) -> float:
    return statistics.median(run["seconds"] for run in runs)


def _seconds(runs: list[dict]) -> str:
    return ", ".join(f"{run['seconds']:.1f}" for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=2, metavar=("WHAT", "SAMPLES"))
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--large-reps", type=int, default=1, help="rounds above 64 samples")
    parser.add_argument("--samples", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--unoptimized", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if args.child:
        what, samples = args.child
        if what == "drift":
            result = run_drift(Path(samples))
        else:
            result = run_plain(Path(samples), optimize=what == "plain")
        print(json.dumps(result))
        return
    build_model()
    script = Path(__file__)
    kinds = ["plain", "drift"] + (["plain-noopt"] if args.unoptimized else [])
    rows, memory = [], []
    loads = []
    for count in args.samples:
        samples = str(build_samples(count))
        reps = args.reps if count <= 64 else args.large_reps
        loads.append(os.getloadavg()[0])
        runs = _rounds(script, reps, samples, kinds)
        loads.append(os.getloadavg()[0])
        rows.append((count, runs))
        memory.append(
            (count, *(max(run["peak_rss_mib"] for run in runs[k]) for k in ("plain", "drift")))
        )
        print(count, json.dumps(runs), flush=True)
    lines = [
        "### Cost of the drift check (ResNet-50, 224×224)",
        "",
        stamp(),
        f"`python benchmarks/drift_cost.py --reps {args.reps} --large-reps {args.large_reps}` "
        "(each run in a fresh "
        "interpreter; plain and drift runs alternate, every other round in reverse order; "
        f"medians, every run listed; {args.large_reps} round(s) above 64 samples). Plain ONNX "
        "Runtime: default session options, the same samples in the same batches "
        f"({batch_for(Path('x'))} samples), session creation included on both sides. Load "
        f"average (1 min) during the runs: {min(loads):.1f}–{max(loads):.1f} on 2 cores.",
        "",
        "| samples | rounds | plain ORT (s) | drift check (s) | drift / plain | "
        "ratio per round | runs plain / drift (s) |",
        "|--:|--:|--:|--:|--:|---|---|",
    ]
    for count, runs in rows:
        plain, drift = runs["plain"], runs["drift"]
        pairs = [d["seconds"] / p["seconds"] for p, d in zip(plain, drift, strict=True)]
        lines.append(
            f"| {count} | {len(plain)} | {_median(plain):.2f} | {_median(drift):.2f} | "
            f"**{_median(drift) / _median(plain):.2f}×** | "
            f"{', '.join(f'{r:.2f}' for r in pairs)} | "
            f"{_seconds(plain)} / {_seconds(drift)} |"
        )
    if args.unoptimized:
        lines += ["", "ORT with graph optimizations off, same rounds (median, s): "]
        lines[-1] += "; ".join(
            f"{count} samples: {_median(runs['plain-noopt']):.2f}" for count, runs in rows
        )
    lines += [
        "",
        "The check runs one session: each BN's input is centred on its running mean by an "
        "Add that folds into the convolution's bias, the BN reads it (a fused pass of scale, "
        "shift, ReLU or residual Add), and per-sample sums of it and of its square are taken "
        "inside the session (GlobalAveragePool, Mul, GlobalAveragePool); nothing the model "
        "computes after the last BN runs.",
        "",
        "Peak resident memory of the whole process (Python, NumPy, ONNX Runtime, the model; "
        "the plain baseline reads the samples through a memory map, so its mapped pages "
        "count; the drift check streams them):",
        "",
        "| samples | plain ORT (MiB) | drift check (MiB) |",
        "|--:|--:|--:|",
    ]
    lines += [f"| {count} | {p:.0f} | {d:.0f} |" for count, p, d in memory]
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        write_section("cost", markdown)


if __name__ == "__main__":
    main()
