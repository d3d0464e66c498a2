"""Accuracy before and after ``bnlint recalibrate`` on the synthetic task.

    python benchmarks/drift_accuracy.py [--seeds 5] [--no-write]

Per seed: tests/drift_models.DriftNet trained 400 steps on task "a" (noise 2.0: a task it
does not solve perfectly), exported to ONNX with its BatchNorms. Served with a
preprocessing mistake (x255, per-channel offsets, channels reversed), and — after
fine-tuning in eval mode on task "b" with the first block frozen — on task "b". For each:
the accuracy on 2,000 held-out samples as served, BN021's verdict on 256 served samples,
the accuracy after ``bnlint recalibrate`` on those 256 samples, and (for preprocessing
mistakes) after fixing the preprocessing instead; plus BN021 on held-out samples after.
Everything goes through the real ``bnlint`` executable.
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.drift_common import MODELS, ROOT, stamp, write_section

NOISE, STEPS, SERVED, HELD_OUT = 2.0, 400, 256, 2000


def _bnlint(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bnlint", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=1800,
    )


def _verdict(model: Path, samples: Path) -> tuple[int, str]:
    done = _bnlint(model, "--sample-data", samples, "--select", "BN021", "--format", "json")
    findings = json.loads(done.stdout)["models"][0]["findings"]
    found = [f for f in findings if f["code"] == "BN021"]
    first = next((f for f in found if f["evidence"].get("first_mismatch")), None)
    if first is None:
        return len(found), "no BN021"
    cause = first["evidence"].get("explanation") or first["evidence"].get("cause")
    return len(found), f"{first['scope'] or first['node']}: {cause}"


def _recalibrated(model: Path, samples: Path, out: Path) -> Path:
    done = _bnlint("recalibrate", model, "--sample-data", samples, "-o", out)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return out


def run_seed(seed: int, folder: Path) -> list[dict]:
    from tests import drift_models as dm

    base = dm.train(seed=seed, steps=STEPS, noise=NOISE)
    base_path = dm.export_onnx(base, folder / "base.onnx")
    held_x, held_y = dm.make_data(HELD_OUT, 700 + seed, "a", NOISE)
    served_x, _ = dm.make_data(SERVED, 800 + seed, "a", NOISE)
    clean = dm.onnx_accuracy(base_path, held_x, held_y)
    rows = []
    for name, corrupt in (
        ("inputs ×255", lambda x: x * 255),
        ("channel offsets", dm.shift_mean),
        ("channels reversed", dm.swap_channels),
    ):
        samples = folder / "served.npy"
        np.save(samples, corrupt(served_x))
        held = folder / "held.npy"
        np.save(held, corrupt(held_x))
        count, verdict = _verdict(base_path, samples)
        fixed = _recalibrated(base_path, samples, folder / "recalibrated.onnx")
        rows.append(
            {
                "scenario": name,
                "clean": clean,
                "served": dm.onnx_accuracy(base_path, corrupt(held_x), held_y),
                "verdict": verdict,
                "reported": count,
                "recalibrated": dm.onnx_accuracy(fixed, corrupt(held_x), held_y),
                "after": _verdict(fixed, held)[0],
                "fixed_preprocessing": clean,
            }
        )
    tuned = dm.finetune_in_eval_mode(copy.deepcopy(base), seed=seed + 1, steps=STEPS, noise=NOISE)
    tuned_path = dm.export_onnx(tuned, folder / "tuned.onnx")
    held_x, held_y = dm.make_data(HELD_OUT, 900 + seed, "b", NOISE)
    served_b = folder / "served-b.npy"
    np.save(served_b, dm.make_data(SERVED, 1000 + seed, "b", NOISE)[0])
    held_b = folder / "held-b.npy"
    np.save(held_b, held_x)
    count, verdict = _verdict(tuned_path, served_b)
    fixed = _recalibrated(tuned_path, served_b, folder / "tuned-recalibrated.onnx")
    rows.append(
        {
            "scenario": "fine-tuned in eval mode, task b",
            "clean": None,
            "served": dm.onnx_accuracy(tuned_path, held_x, held_y),
            "verdict": verdict,
            "reported": count,
            "recalibrated": dm.onnx_accuracy(fixed, held_x, held_y),
            "after": _verdict(fixed, held_b)[0],
            "fixed_preprocessing": None,
        }
    )
    return rows


def _spread(values: list[float | None]) -> str:
    found = [v for v in values if v is not None]
    if not found:
        return "—"
    mean = np.mean(found)
    return f"{mean:.1%}" if len(found) == 1 else f"{mean:.1%} ({min(found):.1%}–{max(found):.1%})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    folder = MODELS / "accuracy"
    folder.mkdir(parents=True, exist_ok=True)
    by_scenario: dict[str, list[dict]] = {}
    for seed in range(args.seeds):
        for row in run_seed(seed, folder):
            by_scenario.setdefault(row["scenario"], []).append(row)
        print(f"seed {seed} done", flush=True)
    lines = [
        "### Accuracy before and after `bnlint recalibrate` (synthetic task)",
        "",
        stamp(),
        f"`python benchmarks/drift_accuracy.py --seeds {args.seeds}`: mean over seeds (range); "
        f"{HELD_OUT} held-out samples per accuracy, {SERVED} served samples for the check and "
        "the re-estimation, 4 classes (chance 25 %).",
        "",
        "| served | clean inputs | as served | BN021 first layer: cause (seed 0) | "
        "after recalibrate | BN021 on held-out after | after fixing the preprocessing |",
        "|---|--:|--:|---|--:|--:|--:|",
    ]
    for scenario, rows in by_scenario.items():
        after = sum(row["after"] for row in rows)
        lines.append(
            f"| {scenario} | {_spread([r['clean'] for r in rows])} | "
            f"{_spread([r['served'] for r in rows])} | {rows[0]['verdict']} | "
            f"{_spread([r['recalibrated'] for r in rows])} | "
            f"{after} finding{'s' if after != 1 else ''} in {len(rows)} runs | "
            f"{_spread([r['fixed_preprocessing'] for r in rows])} |"
        )
    markdown = "\n".join(lines)
    print(markdown)
    if not args.no_write:
        write_section("accuracy", markdown)


if __name__ == "__main__":
    main()
