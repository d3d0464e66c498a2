"""Signal and size of bnlint's default output (issue 15): findings and report sizes.

    python benchmarks/report_noise.py [--bnlint PATH] [--no-browser] [--work DIR]

Runs the ``bnlint`` executable given (default: the one beside this interpreter) on

- the bundled example models (``examples/build_examples.py``),
- a healthy ResNet-50 exported with BN preserved (``benchmarks/bench_models.py``),
- a chain of 300 Conv-BN-ReLU layers (healthy),
- a chain of 1,000 Conv-BN-ReLU layers left in training mode (1,000 real defects),
- 1,000 layers that all stand out (negative variance, Conv bias, every other one in
  training mode: 2,500 findings; ``tests/report_models.deep_chain``),
- a folder of 200 small models with 6 findings each (``tests/report_models.many_models``),

and prints, per input, the exit code, the number of findings by code (JSON), the number of
lines the default terminal output has, and the HTML report's size in bytes and, with
Chromium (``/usr/bin/chromium``), its rendered height in CSS pixels at 1400 px wide and
its widest element at 360 px. It only reads what bnlint writes, so the same script measures
any checkout (``--bnlint /other/venv/bin/bnlint``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def chain(path: Path, layers: int, training: bool) -> Path:
    """``layers`` blocks of Conv(1x1) -> BatchNormalization -> Relu on 4 channels."""
    rng = np.random.default_rng(layers)
    nodes, weights, current = [], [], "x"
    for block in range(layers):
        p = f"layer{block}"
        w = rng.normal(0, 0.5, (4, 4, 1, 1)).astype(np.float32)
        weights.append(numpy_helper.from_array(w, f"{p}.conv.weight"))
        stats = {
            "weight": rng.uniform(0.5, 1.5, 4),
            "bias": rng.normal(0, 0.1, 4),
            "running_mean": rng.normal(0, 0.2, 4),
            "running_var": rng.uniform(0.5, 2.0, 4),
        }
        names = []
        for role, values in stats.items():
            weights.append(numpy_helper.from_array(values.astype(np.float32), f"{p}.bn.{role}"))
            names.append(f"{p}.bn.{role}")
        outputs = [f"{p}.n", f"{p}.m", f"{p}.v"] if training else [f"{p}.n"]
        attrs = {"training_mode": 1} if training else {}
        nodes += [
            helper.make_node("Conv", [current, f"{p}.conv.weight"], [f"{p}.c"], name=f"{p}.conv"),
            helper.make_node(
                "BatchNormalization", [f"{p}.c", *names], outputs, name=f"{p}.bn", **attrs
            ),
            helper.make_node("Relu", [f"{p}.n"], [f"{p}.r"], name=f"{p}.relu"),
        ]
        current = f"{p}.r"
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, 4, 8, 8])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def inputs(work: Path) -> dict[str, Path]:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "build_examples", REPO / "examples" / "build_examples.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(str(work / "examples"))
    found = {"examples": work / "examples"}
    resnet = work / "resnet50.onnx"
    if not resnet.exists():
        from benchmarks.bench_models import export_bn_preserved
        from tests.zoo.torch_models import resnet50

        export_bn_preserved(resnet50, resnet, (1, 3, 224, 224))
    found["resnet50"] = resnet
    found["chain-300"] = chain(work / "chain-300.onnx", 300, training=False)
    found["training-1000"] = chain(work / "training-1000.onnx", 1000, training=True)
    from tests.report_models import deep_chain, many_models

    found["anomalous-1000"] = deep_chain(work / "anomalous-1000")  # 2,500 findings
    found["models-200"] = many_models(work / "models-200", 200)  # 1,200 findings
    return found


def page_metrics(html: Path) -> dict[str, int]:
    from tests.chromium import Chromium, sized_page

    with tempfile.TemporaryDirectory() as profile:
        browser = Chromium(Path(profile))
        try:
            metrics = {}
            for width in (1400, 360):
                page = sized_page(browser, width, 900)
                page.navigate(html.as_uri())
                metrics[f"height@{width}"] = page.evaluate("document.documentElement.scrollHeight")
                metrics[f"scroll-width@{width}"] = page.evaluate(
                    "document.documentElement.scrollWidth"
                )
            return metrics
        finally:
            browser.close()


def measure(bnlint: str, name: str, target: Path, work: Path, browser: bool) -> dict:
    text = subprocess.run([bnlint, str(target)], capture_output=True, text=True, cwd=work)
    html = work / f"{name}.html"
    run = subprocess.run(
        [bnlint, str(target), "--format", "json", "--report-html", str(html)],
        capture_output=True,
        text=True,
        cwd=work,
    )
    data = json.loads(run.stdout)
    by_code: dict[str, int] = {}
    for model in data["models"]:
        for finding in model["findings"]:
            by_code[finding["code"]] = by_code.get(finding["code"], 0) + 1
    row = {
        "input": name,
        "exit": text.returncode,
        "findings": sum(by_code.values()),
        "by_code": dict(sorted(by_code.items())),
        "terminal_lines": len(text.stdout.splitlines()),
        "html_bytes": html.stat().st_size,
    }
    if browser:
        row.update(page_metrics(html))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bnlint", default=str(Path(sys.executable).with_name("bnlint")))
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--no-browser", action="store_true")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bnlint-noise-"))
    work.mkdir(parents=True, exist_ok=True)
    for name, target in inputs(work).items():
        print(json.dumps(measure(args.bnlint, name, target, work, not args.no_browser)))


if __name__ == "__main__":
    main()
