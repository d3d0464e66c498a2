"""Recall per PyTorch format on the labelled parity zoo (``python benchmarks/torch_recall.py``).

The zoo (``tests/zoo/torch_parity.py``: seven networks, one planted BatchNorm defect
each, labelled with the finding that names it, and a clean twin of each) is saved into
``benchmarks/models/torch_zoo/`` (git-ignored) as ``.pt2``, scripted and traced
TorchScript, state dict, checkpoint, pickled module and ONNX (BN kept). Every file is
linted by ``PYTHON -m bnlint … --format json`` (``--python`` picks another installation,
e.g. one of an older checkout, for a before/after) under each label's settings, then:

- recall: labelled defects reported (code at the module path) ÷ labelled defects whose
  network exists in that format (a network that cannot run has no ``.pt2``/trace/ONNX);
- noise: BN0xx errors and warnings on the clean twins (default settings).

    python benchmarks/torch_recall.py                       # this checkout
    python benchmarks/torch_recall.py --python /tmp/old/bin/python --cwd /tmp/oldwt
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ZOO = ROOT / "benchmarks" / "models" / "torch_zoo"
START, END = "<!-- torch-recall:start -->", "<!-- torch-recall:end -->"
HEADING = "## Recall on the labelled PyTorch zoo"
FORMATS = (
    "pt2",
    "script",
    "script+trust",
    "trace",
    "trace+trust",
    "state_dict",
    "checkpoint",
    "pickled_module",
    "safetensors",
    "onnx",
)


def build() -> dict:
    manifest = ZOO / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text())
    from tests.torch_formats import ZOO_FORMATS, save_onnx, save_parity_zoo
    from tests.zoo import torch_models, torch_parity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = save_parity_zoo(ZOO, ZOO_FORMATS)
        for variant, paths in saved.items():
            if "pt2" in paths:  # it runs, so it exports
                model = torch_models.build(variant)
                example = (torch_models.example_input(variant),)
                paths["onnx"] = str(save_onnx(model, example, ZOO / variant / "model.onnx"))
    labels = {
        name: [[d.code, d.scope, d.settings] for d in case.defects]
        for name, case in torch_parity.CASES.items()
    }
    data = {"files": saved, "labels": labels}
    manifest.write_text(json.dumps(data, indent=1))
    return data


def _flags(settings: dict) -> list[str]:
    flags = []
    if "phase" in settings:
        flags += ["--phase", settings["phase"]]
    if "train_batch_size" in settings:
        flags += ["--train-batch-size", str(settings["train_batch_size"])]
    for name, dims in settings.get("input_shapes", {}).items():
        flags += ["--input-shape", f"{name}:{'x'.join(map(str, dims))}"]
    return flags


def lint(python: str, cwd: Path, paths: list[str], flags: list[str]) -> dict[str, dict]:
    result = subprocess.run(
        [python, "-m", "bnlint", *paths, *flags, "--format", "json", "--exit-zero"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    models = json.loads(result.stdout)["models"] if result.stdout.strip() else []
    return {model["path"]: model for model in models}


def _file(files: dict, variant: str, fmt: str) -> tuple[str | None, list[str]]:
    base, _, trust = fmt.partition("+")
    path = files[variant].get(base)
    return path, (["--trust-model-code"] if trust else [])


def evaluate(data: dict, python: str, cwd: Path) -> dict[str, dict]:
    files, labels = data["files"], data["labels"]
    runs: dict[tuple, list[str]] = {}
    for name, defects in labels.items():
        for fmt in FORMATS:
            path, trust = _file(files, name, fmt)
            for _, _, settings in defects if path else ():
                runs.setdefault((*trust, *_flags(settings)), []).append(path)
            clean, trust = _file(files, f"{name}_clean", fmt)
            if clean:
                runs.setdefault(tuple(trust), []).append(clean)
    results = {key: lint(python, cwd, sorted(set(paths)), list(key)) for key, paths in runs.items()}
    table: dict[str, dict] = {
        fmt: {"found": 0, "labelled": 0, "noise": 0, "errors": 0} for fmt in FORMATS
    }
    for name, defects in labels.items():
        for fmt in FORMATS:
            row = table[fmt]
            path, trust = _file(files, name, fmt)
            for code, scope, settings in defects if path else ():
                model = results[(*trust, *_flags(settings))][path]
                row["labelled"] += 1
                row["errors"] += model["status"] != "ok"
                keys = {(f["code"], f["scope"] or f["node"]) for f in model.get("findings", [])}
                row["found"] += (code, scope) in keys
            clean, trust = _file(files, f"{name}_clean", fmt)
            if clean:
                model = results[tuple(trust)][clean]
                row["noise"] += sum(
                    f["severity"] in ("error", "warning") and not f["code"].startswith("BN9")
                    for f in model.get("findings", [])
                )
    return table


def render(table: dict[str, dict], before: dict[str, dict] | None) -> str:
    head = "| format | recall | defects found | unreadable | clean-twin errors+warnings |"
    rule = "|---|---:|---:|---:|---:|"
    if before:
        head += " recall before |"
        rule += "---:|"
    lines = [head, rule]
    for fmt, row in table.items():
        recall = row["found"] / row["labelled"] if row["labelled"] else 0.0
        cells = [f"{recall:.2f}", f"{row['found']}/{row['labelled']}", str(row["errors"])]
        cells.append(str(row["noise"]))
        if before:
            old = before[fmt]
            cells.append(f"{old['found'] / old['labelled']:.2f}" if old["labelled"] else "—")
        lines.append(f"| {fmt} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the bnlint installation")
    parser.add_argument("--cwd", type=Path, default=ROOT)
    parser.add_argument("--save", type=Path, help="write the per-format figures as JSON")
    parser.add_argument("--compare", type=Path, help="figures of an earlier run (--save)")
    parser.add_argument("--compare-label", default="", help="what the earlier run measured")
    parser.add_argument("--write", action="store_true", help="rewrite its BENCHMARKS.md section")
    args = parser.parse_args()
    table = evaluate(build(), args.python, args.cwd)
    if args.save:
        args.save.write_text(json.dumps(table, indent=1))
    before = json.loads(args.compare.read_text()) if args.compare else None
    text = render(table, before)
    print(text)
    if args.write:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        import bench_report

        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        intro = (
            f"Reproduce with `python benchmarks/torch_recall.py` (measured {stamp}). The seven "
            "networks of `tests/zoo/torch_parity.py` with one planted defect each (12 labelled "
            "findings), saved in every format; recall = labelled findings reported at their "
            "module path; the clean twins' errors and warnings are the noise. "
            + (f"Before: {args.compare_label}. " if args.compare_label else "")
            + "`+trust` is `--trust-model-code` (torch.jit.load)."
        )
        section = f"{HEADING}\n\n{START}\n{intro}\n\n{text}\n\n{END}\n"
        bench_report.write_sections(ROOT / "BENCHMARKS.md", section, START, END, HEADING)


if __name__ == "__main__":
    main()
