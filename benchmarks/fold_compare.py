"""bnlint fold vs onnxoptimizer ``fuse_bn_into_conv`` vs onnxsim, side by side.

Usage (from the repository root)::

    python benchmarks/fold_compare.py            # writes the table into BENCHMARKS.md
    python benchmarks/fold_compare.py --no-write # prints it only

Four networks are exported from PyTorch with their BatchNorms preserved (TorchScript
exporter, ``do_constant_folding=False``, ``TrainingMode.PRESERVE``) into
``benchmarks/models/`` (git-ignored): a ResNet-50, a MobileNetV2-style network, a
ConvTranspose decoder (one grouped deconvolution) and a Linear+BN MLP (Gemm). Each tool
folds each model; we record the wall time, how many BatchNorms disappeared, the max output
error against the unfolded model in ONNX Runtime (both sessions with graph optimizations
disabled, seeded inputs), and ``bnlint verify --against``'s verdicts on the tool's output.
bnlint's time includes its verification (algebraic and numeric).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODELS_DIR = ROOT / "benchmarks" / "models"
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"
START, END = "<!-- fold-and-verify:start -->", "<!-- fold-and-verify:end -->"
COMMAND = "python benchmarks/fold_compare.py"


def _mlp():
    import torch
    from torch import nn

    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(256, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(),
        nn.Linear(512, 10),
    )


def export_models() -> dict[str, Path]:
    """Export the four networks (seeded, BN statistics filled) unless already present."""
    from bench_models import export_bn_preserved

    from tests.zoo import torch_models as tm

    specs: dict[str, tuple[Callable, tuple[int, ...]]] = {
        "resnet50": (tm.resnet50, (1, 3, 64, 64)),
        "mobilenet-style": (tm.MobileNetBlockNet, (1, 3, 32, 32)),
        "convtranspose-decoder": (tm.ConvTransposeDecoder, (1, 16, 4, 4)),
        "gemm-bn-mlp": (_mlp, (8, 256)),
    }
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (factory, shape) in specs.items():
        path = MODELS_DIR / f"{name}.onnx"
        paths[name] = path
        if not path.exists():
            export_bn_preserved(factory, path, shape, steps=3)
    return paths


def count_bn(model: onnx.ModelProto) -> int:
    return sum(node.op_type == "BatchNormalization" for node in model.graph.node)


def max_error(reference: onnx.ModelProto, folded: onnx.ModelProto) -> tuple[float, float]:
    """(max |folded - original|, that / max |original|) over all outputs, seeded input."""
    from tests.fold_models import run, seeded_feeds

    feeds = seeded_feeds(reference, batch=1, seed=0)
    worst_abs, worst_rel = 0.0, 0.0
    for a, b in zip(run(reference, feeds), run(folded, feeds), strict=True):
        diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
        worst_abs = max(worst_abs, diff)
        worst_rel = max(worst_rel, diff / float(np.abs(a).max()))
    return worst_abs, worst_rel


def fold_bnlint(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    from bnlint.fold import fold_graph
    from bnlint.loaders.onnx import build_graph

    result = fold_graph(build_graph(model, path, SimpleNamespace()))
    if not result.verification.ok:
        raise RuntimeError("bnlint fold failed its own verification")
    return result.folded


def fold_onnxoptimizer(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    import onnxoptimizer

    return onnxoptimizer.optimize(model, ["fuse_bn_into_conv"])


def fold_onnxsim(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    import onnxsim

    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError("onnxsim's own check failed")
    return simplified


TOOLS = {
    "bnlint fold": fold_bnlint,
    "onnxoptimizer fuse_bn_into_conv": fold_onnxoptimizer,
    "onnxsim simplify": fold_onnxsim,
}


def audit_verdicts(original: onnx.ModelProto, folded: onnx.ModelProto, path: Path) -> str:
    from bnlint.fold import audit, verdict_of
    from bnlint.loaders.onnx import build_graph

    result = audit(
        build_graph(original, path, SimpleNamespace()), build_graph(folded, path, SimpleNamespace())
    )
    counts: dict[str, int] = {}
    for record in result.records:
        counts[verdict_of(record)] = counts.get(verdict_of(record), 0) + 1
    return ", ".join(f"{count} {verdict}" for verdict, count in sorted(counts.items()))


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
            abs_error, rel_error = max_error(original, folded)
            rows.append(
                {
                    "model": name,
                    "tool": tool,
                    "seconds": elapsed,
                    "bn": count_bn(original),
                    "folded": count_bn(original) - count_bn(folded),
                    "abs": abs_error,
                    "rel": rel_error,
                    "audit": audit_verdicts(original, folded, path),
                }
            )
            print(
                f"{name:<22} {tool:<32} {elapsed:7.2f}s  {rows[-1]['folded']}/"
                f"{rows[-1]['bn']} BN  rel {rel_error:.1e}",
                file=sys.stderr,
            )
    return rows


def table(rows: list[dict]) -> str:
    import onnxoptimizer
    import onnxruntime
    import onnxsim

    lines = [
        "## Fold and verify",
        "",
        START,
        f"Reproduce with `{COMMAND}` (models are exported into `benchmarks/models/`, "
        "git-ignored). Error: max |folded − original| over the outputs in ONNX Runtime "
        "(graph optimizations disabled on both sides, seeded input), and the same divided "
        "by max |original|; the acceptance bar for a correct float32 fold is 2e-6. "
        "bnlint's time includes both verification levels. The audit column is "
        "`bnlint verify FOLDED --against ORIGINAL` on each tool's output.",
        "",
        f"Versions: onnx {onnx.__version__}, onnxruntime {onnxruntime.__version__}, "
        f"onnxoptimizer {onnxoptimizer.__version__}, onnxsim {onnxsim.__version__}, "
        f"Python {platform.python_version()} on {platform.machine()}.",
        "",
        "| model | tool | time (s) | BN folded | max abs error | max rel error | audit |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['tool']} | {row['seconds']:.2f} | "
            f"{row['folded']} / {row['bn']} | {row['abs']:.2e} | {row['rel']:.2e} | "
            f"{row['audit']} |"
        )
    lines += [
        "",
        "Why the peers fold fewer: onnxoptimizer folds only Conv, and only when every BN "
        "parameter is an initializer; the TorchScript exporter deduplicates equal "
        "initializers (untrained gamma/beta) behind `Identity` nodes, which it then skips. "
        "onnxsim skips the grouped ConvTranspose and has no Gemm fold. `bnlint fold` prints "
        "the reason for every BN it leaves.",
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
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    section = table(measure(export_models()))
    print(section)
    if not args.no_write:
        write_section(section)


if __name__ == "__main__":
    main()
