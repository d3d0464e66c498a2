"""Seeded benchmark models for ``benchmarks/scale.py``, generated into ``benchmarks/models/``.

Nothing is downloaded; every model is rebuilt from a seed when missing:

- ``resnet50.onnx``: the standard ResNet-50 (``tests/zoo/torch_models.py``, bottleneck
  blocks 3-4-6-3, 53 BatchNorms, 25.6 M parameters) exported by the TorchScript exporter
  with its BatchNorms preserved (``TrainingMode.PRESERVE``, no constant folding), 224x224.
- ``chain-<n>.onnx``: a synthetic chain of ``n`` nodes, Conv(1x1, 4 channels) → BN → ReLU
  repeated; 5 small initializers per block. Weights are near-identity so values neither
  vanish nor explode along 48,000 blocks.
- ``external/big.onnx`` + ``big.onnx.data``: Gemm → BN → ReLU x 36 on 4096 features, every
  tensor in one external data file of 2.4 GB, written layer by layer (peak memory one
  64 MiB layer), so generating it needs no 2 GB of RAM.
- ``resnet18-folder/``: 20 ResNet-18 models (45 MB each): one export, then 19 copies with
  seeded weight perturbations, for ``-j 2`` against ``-j 1``.
- ``tiny.onnx``: one Conv → BN → ReLU block (start-up cost).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
MODELS = ROOT / "benchmarks" / "models" / "scale"
CHAIN_BLOCK = 3  # nodes per Conv-BN-ReLU block
EXTERNAL_LAYERS, EXTERNAL_FEATURES = 36, 4096
FOLDER_MODELS = 20
OPSET = 17


def _float_tensor(name: str, values: np.ndarray) -> TensorProto:
    values = np.ascontiguousarray(values, dtype=np.float32)
    tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(values.shape))
    tensor.raw_data = values.tobytes()
    return tensor


def _write_atomic(model: onnx.ModelProto, path: Path) -> None:
    staged = path.with_suffix(".tmp")
    onnx.save_model(model, str(staged))
    staged.replace(path)


def export_bn_preserved(
    factory: Callable, path: Path, shape: tuple[int, ...], seed: int = 0, steps: int = 1
) -> None:
    """A seeded torch model with trained BN statistics, exported with BN kept (eval mode,
    no constant folding), written atomically."""
    import torch

    from tests.zoo import torch_models as tm

    torch.manual_seed(seed)
    model = factory()
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    tm.fill_bn_statistics(model, example, steps=steps)
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_suffix(".tmp")
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
        )
    staged.replace(path)


def _save_graph(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(model, path)
    return path


def resnet50() -> Path:
    path = MODELS / "resnet50.onnx"
    if not path.exists():
        from tests.zoo.torch_models import resnet50 as factory

        export_bn_preserved(factory, path, (1, 3, 224, 224))
    return path


def _bn_stats(rng: np.random.Generator, channels: int) -> list[np.ndarray]:
    gamma = 1.0 + 0.01 * rng.standard_normal(channels)
    beta = 0.01 * rng.standard_normal(channels)
    mean = 0.01 * rng.standard_normal(channels)
    var = 1.0 + 0.01 * np.abs(rng.standard_normal(channels))
    return [gamma, beta, mean, var]


def chain(nodes: int) -> Path:
    """A Conv(1x1)-BN-ReLU chain of ``nodes`` nodes (a multiple of 3)."""
    path = MODELS / f"chain-{nodes}.onnx"
    if path.exists():
        return path
    rng = np.random.default_rng(nodes)
    channels, blocks = 4, nodes // CHAIN_BLOCK
    weights = np.eye(channels) + 0.01 * rng.standard_normal((blocks, channels, channels))
    stats = _bn_stats(rng, channels * blocks)
    graph_nodes, initializers = [], []
    current = "x"
    for block in range(blocks):
        prefix = f"b{block}"
        w = f"{prefix}.conv.weight"
        initializers.append(_float_tensor(w, weights[block].reshape(channels, channels, 1, 1)))
        bn_inputs = []
        for role, values in zip(
            ("weight", "bias", "running_mean", "running_var"), stats, strict=True
        ):
            name = f"{prefix}.bn.{role}"
            part = values[block * channels : (block + 1) * channels]
            initializers.append(_float_tensor(name, part))
            bn_inputs.append(name)
        graph_nodes += [
            helper.make_node("Conv", [current, w], [f"{prefix}.c"], name=f"{prefix}/Conv"),
            helper.make_node(
                "BatchNormalization",
                [f"{prefix}.c", *bn_inputs],
                [f"{prefix}.n"],
                name=f"{prefix}/BatchNormalization",
                epsilon=1e-5,
            ),
            helper.make_node("Relu", [f"{prefix}.n"], [f"{prefix}.r"], name=f"{prefix}/Relu"),
        ]
        current = f"{prefix}.r"
    graph = helper.make_graph(
        graph_nodes,
        f"chain{nodes}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 8, 8])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, channels, 8, 8])],
        initializers,
    )
    return _save_graph(graph, path)


def external() -> Path:
    """A > 2 GB model whose tensors all live in one external data file."""
    folder = MODELS / "external"
    path, data = folder / "big.onnx", folder / "big.onnx.data"
    if path.exists() and data.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2024)
    features = EXTERNAL_FEATURES
    offset = 0
    initializers, nodes = [], []

    def external_tensor(name: str, values: np.ndarray, handle) -> TensorProto:
        nonlocal offset
        raw = np.ascontiguousarray(values, dtype="<f4")
        handle.write(raw.tobytes())
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(raw.shape))
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", data.name), ("offset", offset), ("length", raw.nbytes)):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, str(value)
        offset += raw.nbytes
        return tensor

    current = "x"
    staged = data.with_suffix(".tmp")
    with open(staged, "wb") as handle:
        for layer in range(EXTERNAL_LAYERS):
            prefix = f"layer{layer}"
            weight = rng.standard_normal((features, features), dtype=np.float32)
            weight *= np.float32(1.0 / np.sqrt(features))
            initializers.append(external_tensor(f"{prefix}.fc.weight", weight, handle))
            del weight
            bn_inputs = []
            for role, values in zip(
                ("weight", "bias", "running_mean", "running_var"),
                _bn_stats(rng, features),
                strict=True,
            ):
                name = f"{prefix}.bn.{role}"
                initializers.append(external_tensor(name, values, handle))
                bn_inputs.append(name)
            nodes += [
                helper.make_node(
                    "Gemm", [current, f"{prefix}.fc.weight"], [f"{prefix}.g"], transB=1
                ),
                helper.make_node(
                    "BatchNormalization", [f"{prefix}.g", *bn_inputs], [f"{prefix}.n"]
                ),
                helper.make_node("Relu", [f"{prefix}.n"], [f"{prefix}.r"]),
            ]
            current = f"{prefix}.r"
    staged.replace(data)
    graph = helper.make_graph(
        nodes,
        "external",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, features])],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, [1, features])],
        initializers,
    )
    _save_graph(graph, path)
    return path


def resnet18_folder() -> Path:
    """20 ResNet-18-sized models: one export, then seeded perturbations of its weights."""
    folder = MODELS / "resnet18-folder"
    paths = [folder / f"resnet18-{i:02d}.onnx" for i in range(FOLDER_MODELS)]
    if all(p.exists() for p in paths):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if not paths[0].exists():
        from tests.zoo.torch_models import resnet18 as factory

        export_bn_preserved(factory, paths[0], (1, 3, 224, 224))
    base = onnx.load(str(paths[0]))
    for index, path in enumerate(paths[1:], start=1):
        if path.exists():
            continue
        rng = np.random.default_rng(index)
        model = onnx.ModelProto()
        model.CopyFrom(base)
        for tensor in model.graph.initializer:
            if tensor.data_type != TensorProto.FLOAT or not tensor.raw_data:
                continue
            values = np.frombuffer(tensor.raw_data, dtype="<f4")
            noise = 1.0 + 0.01 * rng.standard_normal(values.size).astype(np.float32)
            if tensor.name.endswith("running_var"):
                noise = np.abs(noise)
            tensor.raw_data = (values * noise).astype("<f4").tobytes()
        _write_atomic(model, path)
    return folder


def tiny() -> Path:
    path = MODELS / "tiny.onnx"
    if path.exists():
        return path
    rng = np.random.default_rng(1)
    stats = _bn_stats(rng, 8)
    names = ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"]
    initializers = [_float_tensor("conv.weight", rng.standard_normal((8, 3, 3, 3)))]
    initializers += [_float_tensor(n, v) for n, v in zip(names, stats, strict=True)]
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "conv.weight"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("BatchNormalization", ["c", *names], ["n"]),
            helper.make_node("Relu", ["n"], ["y"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        initializers,
    )
    return _save_graph(graph, path)


def generate_all(chain_sizes: tuple[int, ...], with_external: bool = True) -> dict[str, Path]:
    """Every model (built only when missing); keys are the names the benchmark uses."""
    MODELS.mkdir(parents=True, exist_ok=True)
    found = {"tiny": tiny(), "resnet50": resnet50(), "resnet18-folder": resnet18_folder()}
    for size in chain_sizes:
        found[f"chain-{size}"] = chain(size)
    if with_external:
        found["external"] = external()
    return found


if __name__ == "__main__":
    for name, where in generate_all((2_250, 9_000, 36_000, 144_000)).items():
        print(f"{name}: {where}")
