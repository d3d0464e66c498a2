"""bnlint fold vs onnxsim, onnxoptimizer and OnnxSlim on the generated zoo, side by side.

Usage (from the repository root)::

    python benchmarks/fold_compare.py            # writes the section into BENCHMARKS.md
    python benchmarks/fold_compare.py --no-write # prints it only

The zoo of ``tests/zoo/fold_zoo.py`` (seed 1: nine architecture families with statistics
from train-mode passes and random affine terms, small widths) plus the full-width
ResNet-50 is exported with every BatchNorm kept into ``benchmarks/models/fold/``
(git-ignored). Each tool folds each model in-process; we record the wall time, how many
BatchNorms disappeared, the largest output difference against the unfolded model in ONNX
Runtime (graph optimizations disabled on both sides, seeded inputs) and
``bnlint verify --against``'s verdicts on the tool's output. bnlint's time includes both
verification levels and the model-output comparison.

Then the targets (``benchmarks/fold_targets.py``): ``bnlint fold`` of the standard
ResNet-50 at 224x224 (``benchmarks/bench_models.py``) with ``--algebraic-only`` and with
both levels, against the floor ``python -c "import onnx; onnx.load(M)"``, whole process,
interleaved rounds (median of five).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

MODELS_DIR = ROOT / "benchmarks" / "models" / "fold"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
START, END = "<!-- fold-and-verify:start -->", "<!-- fold-and-verify:end -->"
COMMAND = "python benchmarks/fold_compare.py"


def export_models() -> dict[str, Path]:
    """The zoo (seed 1) and the full-width ResNet-50, exported unless already present."""
    from tests.zoo import fold_zoo

    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    families = {**fold_zoo.FAMILIES, "resnet50-full": fold_zoo.FULL_RESNET50}
    paths = {}
    for name, family in families.items():
        path = MODELS_DIR / f"{name}.onnx"
        if not path.exists():
            staged = path.with_suffix(".tmp")
            onnx.save(fold_zoo.export(family, seed=1), str(staged))
            staged.replace(path)
        paths[name] = path
    return paths


def count_bn(model: onnx.ModelProto) -> int:
    return sum(node.op_type == "BatchNormalization" for node in model.graph.node)


def max_error(reference: onnx.ModelProto, folded: onnx.ModelProto) -> tuple[float, float] | None:
    """(max |folded - original|, that / max |original|) over all outputs; None when ONNX
    Runtime refuses the folded model."""
    from tests.fold_models import run, seeded_feeds

    feeds = seeded_feeds(reference)
    try:
        pairs = list(zip(run(reference, feeds), run(folded, feeds), strict=True))
    except Exception:
        return None
    worst_abs = worst_rel = 0.0
    for a, b in pairs:
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        diff = float(np.abs(a64 - b64).max())
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / max(float(np.abs(a64).max()), 1e-30))
    return worst_abs, worst_rel


def _graph(model: onnx.ModelProto, path: Path):
    from bnlint.loaders.onnx import build_graph

    return build_graph(model, path, SimpleNamespace())


def fold_bnlint(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    from bnlint.fold import fold_graph

    result = fold_graph(_graph(model, path))
    if not result.verification.ok:
        raise RuntimeError("bnlint fold failed its own verification")
    return result.folded


def fold_onnxsim(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError("onnxsim check failed")
    return simplified


def fold_onnxoptimizer(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    import onnxoptimizer

    return onnxoptimizer.optimize(model, ["fuse_bn_into_conv"])


def fold_onnxslim(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model)


TOOLS = {
    "bnlint fold": fold_bnlint,
    "onnxsim simplify": fold_onnxsim,
    "onnxoptimizer fuse_bn_into_conv": fold_onnxoptimizer,
    "onnxslim slim": fold_onnxslim,
}


def audit_verdicts(original: onnx.ModelProto, folded: onnx.ModelProto, path: Path) -> str:
    from bnlint.fold import audit, verdict_of

    result = audit(_graph(original, path), _graph(folded, path))
    counts: dict[str, int] = {}
    for record in result.records:
        counts[verdict_of(record)] = counts.get(verdict_of(record), 0) + 1
    text = ", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items()))
    problems = [p for p in result.verification.unexplained if "onnx.checker" in p]
    return text + ("; **fails onnx.checker**" if problems else "")


def measure(paths: dict[str, Path]) -> list[dict]:
    rows = []
    for name, path in paths.items():
        original = onnx.load(str(path))
        for tool, fold in TOOLS.items():
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                folded = fold(original, path)
            elapsed = time.perf_counter() - start
            error = max_error(original, folded)
            rows.append(
                {
                    "model": name,
                    "tool": tool,
                    "seconds": elapsed,
                    "bn": count_bn(original),
                    "folded": count_bn(original) - count_bn(folded),
                    "error": error,
                    "audit": audit_verdicts(original, folded, path),
                }
            )
            shown = "invalid" if error is None else f"rel {error[1]:.1e}"
            print(
                f"{name:<14} {tool:<32} {elapsed:6.2f}s {rows[-1]['folded']}/"
                f"{rows[-1]['bn']} BN {shown}",
                file=sys.stderr,
            )
    return rows


def targets(reps: int) -> dict:
    """The interleaved whole-process timing of ``benchmarks/fold_targets.py``."""
    import fold_targets

    return fold_targets.measure(reps)


def table(rows: list[dict], timing: dict) -> str:
    import fold_targets
    import onnxoptimizer
    import onnxruntime
    import onnxsim
    import onnxslim

    load = os.getloadavg()[0]
    lines = [
        "## Fold and verify",
        "",
        START,
        f"Reproduce with `{COMMAND}` (models are exported into `benchmarks/models/fold/`, "
        "git-ignored). The zoo is `tests/zoo/fold_zoo.py` at seed 1 (statistics from "
        "train-mode passes, random affine terms, small widths) and the full-width "
        "ResNet-50 (fan-in up to 4608). Error: max |folded − original| over the outputs in "
        "ONNX Runtime (graph optimizations disabled on both sides, seeded input) and the "
        "same divided by max |original| (`invalid`: ONNX Runtime refuses the model). "
        "bnlint's time includes both verification levels and the model outputs. The audit "
        "column is `bnlint verify FOLDED --against ORIGINAL` on each tool's output.",
        "",
        f"Versions: onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"onnxsim {onnxsim.__version__}, onnxoptimizer {onnxoptimizer.__version__}, "
        f"onnxslim {onnxslim.__version__}, Python {platform.python_version()} on "
        f"{platform.machine()}, {os.cpu_count()} cores; load average {load:.1f} at the end "
        "(other processes shared the cores).",
        "",
    ]
    lines += fold_targets.table(timing)
    lines += [
        "",
        "The targets alone: `python benchmarks/fold_targets.py` (five interleaved rounds).",
    ]
    lines += [
        "",
        "### The zoo, tool by tool",
        "",
        "| model | tool | time (s) | BN folded | max abs error | max rel error | audit |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        error = row["error"]
        shown = "invalid | invalid" if error is None else f"{error[0]:.2e} | {error[1]:.2e}"
        lines.append(
            f"| {row['model']} | {row['tool']} | {row['seconds']:.2f} | "
            f"{row['folded']} / {row['bn']} | {shown} | {row['audit']} |"
        )
    totals: dict[str, list[int]] = {}
    for row in rows:
        entry = totals.setdefault(row["tool"], [0, 0, 0])
        entry[0] += row["folded"]
        entry[1] += row["bn"]
        entry[2] += row["error"] is None
    lines += ["", "| tool | BN folded over the zoo | invalid models written |", "|---|---:|---:|"]
    for tool, (folded, total, invalid) in totals.items():
        lines.append(f"| {tool} | {folded} / {total} | {invalid} |")
    lines += [
        "",
        "Every verdict above agrees with the direct comparison; `tests/test_fold_zoo.py` "
        "checks that on three seeds per family. Why the peers fold fewer: onnxoptimizer "
        "folds only Conv; onnxsim and OnnxSlim have no Gemm/MatMul fold (the BatchNorm1d "
        "MLP) and none of the three folds a BN through a bias Add or a Transpose. The "
        "DenseNet's pre-activation BNs read a Concat: no tool can fold them, and bnlint "
        "says why for each.",
        "",
        END,
        "",
    ]
    return "\n".join(lines)


def write_section(section: str) -> None:
    """Replace this benchmark's own section of BENCHMARKS.md; leave every other section."""
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else "# Benchmarks\n\n"
    if START in text and END in text:
        head = text[: text.index(START)]
        head = head[: head.rindex("## Fold and verify")]
        tail = text[text.index(END) + len(END) :].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    BENCHMARKS_MD.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the section only")
    parser.add_argument("--reps", type=int, default=5, help="interleaved target rounds")
    args = parser.parse_args()
    rows = measure(export_models())
    section = table(rows, targets(args.reps))
    print(section)
    if not args.no_write:
        write_section(section)


if __name__ == "__main__":
    main()
