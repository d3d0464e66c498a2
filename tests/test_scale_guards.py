"""Guards against hangs and memory explosions on large models (never timing assertions).

Each run happens in a subprocess with a timeout about ten times what it takes on a
2-core machine and an address-space limit (``RLIMIT_AS``); a quadratic step or a read of
every weight at once would break the limit instead of merely being slow. Figures live in
BENCHMARKS.md (``make bench``), not here.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20


def _tensor(name: str, values: np.ndarray) -> TensorProto:
    values = np.ascontiguousarray(values, dtype=np.float32)
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(values.shape))
    tensor.raw_data = values.tobytes()
    return tensor


def chain(path: Path, blocks: int) -> Path:
    """Conv(1x1, 4 ch) -> BatchNormalization -> Relu, ``blocks`` times."""
    rng = np.random.default_rng(0)
    nodes, inits, current = [], [], "x"
    for b in range(blocks):
        w = f"b{b}.w"
        inits.append(
            _tensor(
                w,
                np.eye(4).reshape(4, 4, 1, 1) + 0.01 * rng.standard_normal(16).reshape(4, 4, 1, 1),
            )
        )
        params = []
        for role, base in (("s", 1.0), ("b", 0.0), ("m", 0.0), ("v", 1.0)):
            inits.append(_tensor(f"b{b}.{role}", base + 0.01 * np.abs(rng.standard_normal(4))))
            params.append(f"b{b}.{role}")
        nodes += [
            helper.make_node("Conv", [current, w], [f"b{b}.c"], name=f"b{b}/conv"),
            helper.make_node(
                "BatchNormalization", [f"b{b}.c", *params], [f"b{b}.n"], name=f"b{b}/bn"
            ),
            helper.make_node("Relu", [f"b{b}.n"], [f"b{b}.r"], name=f"b{b}/relu"),
        ]
        current = f"b{b}.r"
    graph = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def big_external(folder: Path, features: int = 8192, layers: int = 2) -> Path:
    """Gemm -> BN -> Relu layers whose weights (256 MB each) live in one sparse data file."""
    data = folder / "big.onnx.data"
    inits, nodes, current, offset = [], [], "x", 0
    rng = np.random.default_rng(1)
    with open(data, "wb") as handle:

        def external(name: str, shape: tuple[int, ...], values: np.ndarray | None) -> None:
            nonlocal offset
            length = int(np.prod(shape)) * 4
            if values is not None:
                handle.seek(offset)
                handle.write(np.asarray(values, "<f4").tobytes())
            tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
            tensor.data_location = TensorProto.EXTERNAL
            for key, value in (("location", data.name), ("offset", offset), ("length", length)):
                entry = tensor.external_data.add()
                entry.key, entry.value = key, str(value)
            inits.append(tensor)
            offset += length

        for layer in range(layers):
            external(f"l{layer}.w", (features, features), None)  # zeros, never written
            params = []
            for role, base in (("s", 1.0), ("b", 0.0), ("m", 0.0), ("v", 1.0)):
                external(f"l{layer}.{role}", (features,), base + 0.1 * rng.random(features))
                params.append(f"l{layer}.{role}")
            nodes += [
                helper.make_node("Gemm", [current, f"l{layer}.w"], [f"l{layer}.g"], transB=1),
                helper.make_node("BatchNormalization", [f"l{layer}.g", *params], [f"l{layer}.n"]),
                helper.make_node("Relu", [f"l{layer}.n"], [f"l{layer}.r"]),
            ]
            current = f"l{layer}.r"
        handle.truncate(offset)
    graph = helper.make_graph(
        nodes,
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, features])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, features])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "big.onnx"
    onnx.save(model, path)
    return path


def run_limited(args: list[str], timeout: float, address_space: int | None = None):
    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "bnlint", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        env=env,
    )


def peak_address_space(args: list[str]) -> int:
    """VmPeak (bytes) of a bnlint run: the baseline the limits are set against."""
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['bnlint', *{args!r}]\n"
        "try:\n    runpy.run_module('bnlint', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmPeak')][0].split()[1])"
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=120
    ).stdout
    return int(out.strip().splitlines()[-1]) * 1024


def test_lint_of_a_30000_node_chain_stays_linear(tmp_path: Path) -> None:
    path = chain(tmp_path / "chain.onnx", 10_000)
    small = chain(tmp_path / "small.onnx", 100)
    baseline = peak_address_space([str(small), "-q"])
    # ~4 s on a 2-core machine; a per-node scan of the graph would take hours.
    result = run_limited([str(path), "-q", "--format", "json"], 120, baseline + 1024 * MB)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    assert '"BN902"' not in result.stdout and "Traceback" not in result.stderr


def test_fold_of_a_large_chain_verifies_each_fold_locally(tmp_path: Path) -> None:
    path = chain(tmp_path / "chain.onnx", 2_000)  # 6,000 nodes: above the whole-model limit
    result = run_limited(["fold", str(path), "-o", str(tmp_path / "f.onnx")], 120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "whole models are not run at this size" in result.stdout
    assert (tmp_path / "f.onnx").exists()


def test_a_model_with_gigabytes_of_weights_is_linted_in_bounded_memory(tmp_path: Path) -> None:
    path = big_external(tmp_path)  # 512 MB of weights, sparse on disk
    small = big_external_small(tmp_path / "small")
    baseline = peak_address_space([str(small), "-q"])
    # Reading every weight at once would need 512 MB more address space than allowed.
    result = run_limited([str(path), "-q", "--format", "json"], 120, baseline + 256 * MB)
    assert result.returncode in (0, 1), result.stderr[-2000:]
    assert '"BN901"' not in result.stdout and '"BN902"' not in result.stdout


def big_external_small(folder: Path) -> Path:
    folder.mkdir()
    return big_external(folder, features=64)
