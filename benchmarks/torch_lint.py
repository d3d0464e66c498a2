"""Lint time on PyTorch files, per format (``python benchmarks/torch_lint.py``).

The zoo's PyTorch networks (``tests/zoo/torch_models.py``: ResNet-50, ResNetSmall, the
MobileNet-style block net, the BatchNorm1d transformer), seeded, saved in every format
bnlint reads: ``torch.export`` (``.pt2``), scripted and traced TorchScript, a state dict,
a training checkpoint dict, a whole pickled module (``torch.save(model)``) and
safetensors. Each ``bnlint FILE -q --exit-zero`` runs as its own process, interleaved
with the others, and the median of the repetitions is reported with its peak RSS; the
anchor is ``python -c "import torch"`` measured in the same run. Files are generated into
``benchmarks/models/torch/`` (git-ignored) on the first run.

    python benchmarks/torch_lint.py                    # measure, print, rewrite the section
    python benchmarks/torch_lint.py --save before.json # also keep the raw figures
    python benchmarks/torch_lint.py --compare before.json  # adds a before/after column
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import bench_report  # noqa: E402
import scale  # noqa: E402

MODELS = ROOT / "benchmarks" / "models" / "torch"
NETWORKS = ("resnet50", "resnet_small", "mobilenet_block", "transformer_bn1d")
FORMATS = ("pt2", "script", "trace", "state_dict", "checkpoint", "pickled_module", "safetensors")
START, END = "<!-- torch-lint:start -->", "<!-- torch-lint:end -->"
HEADING = "## PyTorch files"


def generate() -> dict[tuple[str, str], Path]:
    """``{(network, format): path}``, written once (seeded, so reruns are byte-stable)."""
    paths = {
        (net, fmt): MODELS / net / f"model.{fmt}.{'pt2' if fmt == 'pt2' else 'pt'}"
        for net in NETWORKS
        for fmt in FORMATS
    }
    for net in NETWORKS:
        wanted = {fmt: paths[(net, fmt)] for fmt in FORMATS}
        if all(path.exists() for path in wanted.values()):
            continue
        import torch

        from tests.torch_formats import save_pt2, save_safetensors, save_script, save_trace
        from tests.zoo import torch_models

        folder = MODELS / net
        folder.mkdir(parents=True, exist_ok=True)
        model = torch_models.build(net)
        example = (torch_models.example_input(net),)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            save_pt2(model, example, wanted["pt2"])
            save_script(model, wanted["script"])
            save_trace(model, example, wanted["trace"])
            torch.save(model.state_dict(), wanted["state_dict"])
            torch.save({"epoch": 3, "state_dict": model.state_dict()}, wanted["checkpoint"])
            torch.save(model, wanted["pickled_module"])
            save_safetensors(model, wanted["safetensors"])
    return paths


def measure(
    paths: dict[tuple[str, str], Path], reps: int, cap: float, baseline: Path | None
) -> dict[str, dict]:
    """Every file with this checkout (and with ``baseline``, another bnlint checkout
    installed in its own ``.venv``, interleaved: the same load on the machine for both)."""
    cases: dict[str, tuple[list[str], Path, dict[str, str] | None]] = {
        "import-torch": (scale._py("import torch"), ROOT, None)
    }
    old_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for (net, fmt), path in paths.items():
        cases[f"{net}/{fmt}"] = (scale._bnlint(str(path), "-q", "--exit-zero"), ROOT, None)
        if baseline is not None:
            argv = [str(baseline / ".venv" / "bin" / "python"), "-m", "bnlint", str(path)]
            cases[f"{net}/{fmt}@before"] = ([*argv, "-q", "--exit-zero"], baseline, old_env)
    results: dict[str, dict] = {key: {"times": [], "rss": [], "error": None} for key in cases}
    for rep in range(reps):
        for key, (argv, cwd, env) in cases.items():
            entry = results[key]
            if entry["error"]:
                continue
            seconds, rss, error = scale.run(argv, cap, (0, 2), cwd, env)
            if error or seconds is None:
                entry["error"] = error or "timeout"
                continue
            entry["times"].append(seconds)
            entry["rss"].append(rss)
            print(f"[{rep + 1}/{reps}] {key:<32} {seconds:6.2f}s {rss:6.0f} MB", file=sys.stderr)
    return results


def _median(entry: dict | None) -> float | None:
    return statistics.median(entry["times"]) if entry and entry["times"] else None


def render(results: dict, before: dict | None, stamp: str, label: str = "") -> str:
    """The section; the "before" columns are an earlier run's figures (``--compare``) or
    the baseline checkout's, measured interleaved in this run (``--baseline``)."""
    anchor = _median(results["import-torch"])
    if before is None and any(key.endswith("@before") for key in results):
        before = {k.removesuffix("@before"): v for k, v in results.items() if "@" in k}
        label = label or "the baseline checkout, interleaved in this run"
    lines = [
        HEADING,
        "",
        START,
        "Reproduce with `python benchmarks/torch_lint.py` (files are generated into "
        "`benchmarks/models/torch/`, git-ignored). Whole-process `bnlint FILE -q --exit-zero`, "
        f'median of the repetitions; the anchor is `python -c "import torch"` '
        f"({anchor:.2f} s in this run). Measured {stamp} on {bench_report.machine()}."
        + (f" Before: {label}." if label else ""),
        "",
        "| network | format | time (s) | ÷ import torch | peak RSS (MB) |"
        + (" before (s) | after ÷ before |" if before else ""),
        "|---|---|---:|---:|---:|" + ("---:|---:|" if before else ""),
    ]
    for key, entry in results.items():
        if key == "import-torch" or key.endswith("@before"):
            continue
        net, fmt = key.split("/")
        median = _median(entry)
        if median is None:
            cells = [entry["error"] or "failed", "", ""]
        else:
            rss = statistics.median(entry["rss"])
            cells = [f"{median:.2f}", f"{median / anchor:.2f}×", f"{rss:.0f}"]
        if before:
            old = _median(before.get(key))
            if old is None:
                cells += [(before.get(key) or {}).get("error") or "—", "—"]
            else:
                cells += [f"{old:.2f}", f"{median / old:.2f}×" if median else "—"]
        lines.append(f"| {net} | {fmt} | " + " | ".join(cells) + " |")
    lines += ["", END, ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cap", type=float, default=120.0)
    parser.add_argument("--save", type=Path, help="write the raw figures to this JSON file")
    parser.add_argument("--compare", type=Path, help="raw figures of an earlier run")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another bnlint checkout with its own .venv, measured interleaved with this one",
    )
    parser.add_argument("--baseline-label", default="", help="what the baseline is (a commit)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    paths = generate()
    scale._byte_compile()
    results = measure(paths, args.reps, args.cap, args.baseline)
    if args.save:
        args.save.write_text(json.dumps(results, indent=1))
    before = json.loads(args.compare.read_text()) if args.compare else None
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    label = f"bnlint at {args.baseline_label}" if args.baseline_label else ""
    text = render(results, before, stamp, label)
    print(text)
    if not args.no_write:
        bench_report.write_sections(ROOT / "BENCHMARKS.md", text, START, END, HEADING)


if __name__ == "__main__":
    main()
