"""Tables for ``benchmarks/scale.py``: targets, every command, growth with graph size.

The Markdown goes between ``<!-- scale:start -->`` and ``<!-- scale:end -->`` in
BENCHMARKS.md; every other section (e.g. "Fold and verify") is left as it is.
"""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

START, END = "<!-- scale:start -->", "<!-- scale:end -->"
HEADING = "## Performance and scale"
COMMAND = "make bench"
LIBRARIES = ("onnx", "onnxruntime", "numpy", "protobuf", "onnxoptimizer", "onnxsim", "polygraphy")
ACCURACY_MODELS = ("resnet50", "chain-9000")


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine() -> str:
    cpu = "unknown CPU"
    memory = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f", {int(line.split()[1]) / 1024**2:.0f} GB RAM"
                break
    except OSError:
        pass
    versions = ", ".join(f"{name} {_version(name)}" for name in LIBRARIES)
    return (
        f"{cpu}, {os.cpu_count()} cores{memory}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; {versions}"
    )


def fold_accuracy(models: dict[str, Path], out: Path) -> dict[str, float | None]:
    """max |folded - original| / max |original| over the outputs, ONNX Runtime, seeded input."""
    import onnx

    from bnlint.onnx.runtime import OnnxRunner
    from bnlint.runtime import make_feeds

    found: dict[str, float | None] = {}
    for name in ACCURACY_MODELS:
        folded = out / f"{name}.f2.onnx"
        if not folded.exists():
            found[name] = None
            continue
        reference = OnnxRunner(onnx.load(str(models[name])))
        candidate = OnnxRunner(onnx.load(str(folded)))
        feeds = make_feeds(reference.inputs, batch=2, seed=0)
        worst = 0.0
        for a, b in zip(reference.run(feeds), candidate.run(feeds), strict=True):
            a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
            worst = max(worst, float(np.abs(a64 - b64).max() / np.abs(a64).max()))
        found[name] = worst
    return found


def _median(results: dict, key: str) -> float | None:
    case = results.get(key)
    return case.median if case is not None else None


def _cell(results: dict, key: str) -> str:
    case = results.get(key)
    if case is None:
        return "not run"
    if case.failed:
        return f"failed: {case.failed[:60]}"
    if case.timed_out:
        return f"> {case.cap:.0f} s"
    return f"{case.median:.2f}"


def _ratio(results: dict, key: str, anchor: str) -> float | None:
    value, base = _median(results, key), _median(results, anchor)
    case = results.get(key)
    if case is not None and case.timed_out and base:
        return case.cap / base  # a lower bound
    return value / base if value is not None and base else None


def _peak_mb(results: dict, key: str) -> float | None:
    case = results.get(key)
    return max(case.rss_mb) if case is not None and case.rss_mb else None


def _fmt(ratio: float | None, lower_bound: bool = False) -> str:
    if ratio is None:
        return "n/a"
    return f"{'> ' if lower_bound else ''}{ratio:.2f}×"


def _verdict(value: float | None, limit: float, below: bool = True) -> str:
    if value is None:
        return "n/a"
    return "met" if (value <= limit if below else value >= limit) else "**not met**"


def targets(results: dict, extra: dict) -> list[str]:
    chain = "chain-36000"
    rows: list[tuple[str, float | None, float, bool, str]] = []

    def add(label, value, limit, below=True, shown=None):
        rows.append((label, value, limit, below, shown or _fmt(value)))

    add(
        "ResNet-50 lint, whole process ÷ floor",
        _ratio(results, "resnet50:lint", "resnet50:floor"),
        1.6,
    )
    inproc = extra.get("inprocess") or {}
    if inproc:
        engine = inproc["engine"] / inproc["onnx_load"]
        api = inproc["api_lint"] / inproc["onnx_load"]
        add("ResNet-50 lint in-process (load + rules) ÷ in-process onnx.load", engine, 1.3)
        add("… the same through `bnlint.lint()` (adds the report's sha256 provenance)", api, 1.3)
    add(f"{chain} lint ÷ floor", _ratio(results, f"{chain}:lint", f"{chain}:floor"), 3.0)
    growth = [
        _ratio(results, f"chain-{b}:lint", f"chain-{a}:lint")
        for a, b in zip((2250, 9000, 36000), (9000, 36000, 144000), strict=True)
    ]
    worst = max((g for g in growth if g is not None), default=None)
    add("4× the nodes (2,250 → 144,000): worst time growth", worst, 4.5)
    add(
        "external-data model (2.4 GB) lint ÷ full-load floor",
        _ratio(results, "external:lint", "external:floor"),
        0.3,
    )
    peak = _peak_mb(results, "external:lint")
    add(
        "external-data model lint, peak RSS (MB)",
        peak,
        150,
        shown=f"{peak:.0f} MB" if peak else "n/a",
    )
    add(
        "… with BN013 off (no producer weights read) ÷ full-load floor",
        _ratio(results, "external:lint-no-bn013", "external:floor"),
        0.3,
    )
    peak = _peak_mb(results, "external:lint-no-bn013")
    add("… its peak RSS (MB)", peak, 150, shown=f"{peak:.0f} MB" if peak else "n/a")
    add(
        "`bnlint --version` ÷ `python -c 'import onnx'`",
        _ratio(results, "version", "import-onnx"),
        1.0,
    )
    add(
        "lint a tiny model ÷ `python -c 'import onnx'`", _ratio(results, "tiny", "import-onnx"), 2.2
    )
    add(
        "ResNet-50 fold + algebraic verification ÷ floor",
        _ratio(results, "resnet50:fold-algebraic", "resnet50:floor"),
        3.0,
    )
    add(
        "ResNet-50 fold + algebraic + numeric verification ÷ floor",
        _ratio(results, "resnet50:fold", "resnet50:floor"),
        6.0,
    )
    add(
        f"{chain} fold + algebraic verification ÷ floor",
        _ratio(results, f"{chain}:fold-algebraic", f"{chain}:floor"),
        6.0,
    )
    add(
        f"{chain} fold + both levels (numeric per fold, locally) ÷ floor",
        _ratio(results, f"{chain}:fold", f"{chain}:floor"),
        6.0,
    )
    for name, error in (extra.get("accuracy") or {}).items():
        add(
            f"fold accuracy {name}: max|folded − original| ÷ max|output|",
            error,
            2e-6,
            shown=f"{error:.2e}" if error is not None else "n/a",
        )
    speedup = _ratio(results, "folder:j1", "folder:j2")
    add("`-j 2` speed-up over `-j 1`, 20 ResNet-18 models", speedup, 1.7, below=False)
    folder, one = _peak_mb(results, "folder:j1"), _peak_mb(results, "folder:one")
    add(
        "20 ResNet-18 models `-j 1`, peak RSS ÷ one of them alone (flat memory; ours)",
        folder / one if folder and one else None,
        1.5,
    )
    lines = ["| target | measured | limit | |", "|---|---:|---:|---|"]
    for label, value, limit, below, shown in rows:
        bound = f"≤ {limit:g}" if below else f"≥ {limit:g}"
        lines.append(f"| {label} | {shown} | {bound} | {_verdict(value, limit, below)} |")
    return lines


def all_commands(results: dict) -> list[str]:
    lines = ["| command | median (s) | ÷ its floor | peak RSS (MB) |", "|---|---:|---:|---:|"]
    for key, case in results.items():
        model = key.split(":")[0]
        floor = "import-onnx" if ":" not in key else f"{model}:floor"
        ratio = "" if key == floor else _fmt(_ratio(results, key, floor), case.timed_out)
        rss = f"{max(case.rss_mb):.0f}" if case.rss_mb else ""
        lines.append(f"| `{key}` | {_cell(results, key)} | {ratio} | {rss} |")
    return lines


def growth(results: dict, sizes: tuple[int, ...]) -> list[str]:
    lines = [
        "| nodes | floor (s) | bnlint (s) | bnlint ÷ floor | bnlint growth | floor growth |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    previous = None
    for size in sizes:
        floor, lint = (
            _median(results, f"chain-{size}:floor"),
            _median(results, f"chain-{size}:lint"),
        )
        grow = grow_floor = ""
        if previous is not None and lint and floor:
            grow = _fmt(lint / previous[1]) if previous[1] else ""
            grow_floor = _fmt(floor / previous[0]) if previous[0] else ""
        lines.append(
            f"| {size:,} | {_cell(results, f'chain-{size}:floor')} | "
            f"{_cell(results, f'chain-{size}:lint')} | "
            f"{_fmt(_ratio(results, f'chain-{size}:lint', f'chain-{size}:floor'))} | "
            f"{grow} | {grow_floor} |"
        )
        previous = (floor, lint)
    return lines


def render(results: dict, extra: dict, models: dict, args: Any) -> str:
    from bench_models import CHAIN_BLOCK

    stamp = extra.get("measured") or time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    inproc = extra.get("inprocess") or {}
    lines = [
        HEADING,
        "",
        START,
        f"Reproduce with `{COMMAND}` (`python benchmarks/scale.py`; models are generated with "
        "seeded weights into `benchmarks/models/scale/`, git-ignored). Whole-process times "
        f"are medians of {args.reps} interleaved runs; the floor of each model is "
        '`python -c "import onnx; onnx.load(M)"` on the same file in the same run; peers '
        f'stopped after {args.cap:.0f} s show as "> cap". Measured {stamp} on {machine()}.'
        + _load_note(extra),
        "",
        "### Targets",
        "",
        *targets(results, extra),
        "",
        "### How the cost grows with the graph",
        "",
        f"Synthetic Conv(1×1, 4 channels) → BatchNormalization → ReLU chains ({CHAIN_BLOCK} "
        "nodes and 5 initializers per block), `bnlint M -q` with every rule:",
        "",
        *growth(results, bench_models_sizes(models)),
        "",
        "### Every command",
        "",
        *all_commands(results),
        "",
    ]
    if inproc:
        lines += [
            f"In-process, after imports (median of interleaved calls, ResNet-50): "
            f"`onnx.load` {inproc['onnx_load']:.3f} s, bnlint load + rules "
            f"{inproc['engine']:.3f} s, `bnlint.lint()` {inproc['api_lint']:.3f} s.",
            "",
        ]
    lines += [*NOTES, "", END, ""]
    return "\n".join(lines)


NOTES = [
    "### Notes",
    "",
    '- *Floors.* Whole-process ratios divide by `python -c "import onnx; onnx.load(M)"` '
    "on the same file in the same run. In-process figures are steady-state medians, each "
    "task in its own interpreter after a warm-up call (`benchmarks/inprocess.py`): the "
    "allocator's state alone moves a repeated `onnx.load` of a 100 MB file between 25 and "
    "120 ms, so tasks are never timed in one shared process.",
    "- *Bytecode.* bnlint's modules are byte-compiled before the run, as `pip install` "
    "does for an installed package (the peers and onnx come with theirs). This machine "
    "sets `PYTHONDONTWRITEBYTECODE=1`, under which an uncompiled checkout recompiles its "
    "~110 modules, about 0.1 s, on every start.",
    "- *What bnlint reads.* ONNX files are parsed from a memory map; when weights dominate "
    "the file, each weight is a zero-copy view of the mapping. Structural rules read no "
    "weights; BN005/BN006/BN014 read only BatchNorm parameters (external data memory-mapped, "
    "a few KB each). BN013 is the one rule that reads producer weights (the folded weight "
    "of each BN is max|W_c| · |s_c|, so every foldable producer's weight is reduced once, "
    "block by block, never whole): on the external-data model it is the difference between "
    "the two lint rows.",
    "- *Large graphs.* BN005/BN006/BN013 evaluate every channel of every BatchNorm at once "
    "(`bnlint/analysis/bn_screens.py`) and run their per-BN code only on layers that may be "
    "reported; a test checks that their findings equal the exhaustive ones. Above 4,096 "
    "nodes `bnlint fold` verifies each fold on its own (identical Conv folds stacked into "
    "one grouped Conv, other kinds side by side in small models) instead of running the "
    "whole model, whose ONNX Runtime session cost grows faster than linearly with its size "
    "(see `ort-session`); it says so in its output.",
    "- *Provenance.* `bnlint.lint()` and the CLI record each model's sha256 in the report; "
    "sha256 runs at about 1 GB/s here, which the in-process row of the targets table shows "
    "separately.",
]


def _load_note(extra: dict) -> str:
    load = extra.get("load")
    if not load:
        return ""
    note = (
        f" Load average {load[0]:.1f} at the start, {load[1]:.1f} at the end (the end "
        "value includes the benchmark's own processes)"
    )
    if load[0] > 1.0:
        note += (
            ": other processes shared the two cores, which inflates every time and most "
            "of all the `-j 2` row"
        )
    return note + "."


def bench_models_sizes(models: dict) -> tuple[int, ...]:
    return tuple(sorted(int(key.split("-")[1]) for key in models if key.startswith("chain-")))


def write_sections(
    path: Path, section: str, start: str = START, end: str = END, heading: str = HEADING
) -> None:
    """Replace one benchmark's section of BENCHMARKS.md (between ``start`` and ``end``,
    under ``heading``); leave every other section."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if start in text and end in text:
        head = text[: text.index(start)]
        head = head[: head.rindex(heading)]
        tail = text[text.index(end) + len(end) :].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)
