"""Build the bundled example models (seeded, a few KB each) for `make demo`.

    python examples/build_examples.py examples/models
    bnlint examples/models

Each model carries a BatchNorm problem that real users report (see the rule catalog):
a model exported in training mode, one shipped with never-updated statistics, one with a
ported Keras momentum and an outlier epsilon, a degenerate variance, and a BatchNorm1d on
the wrong axis; beside them a healthy CNN exported with BN preserved (no findings: its
BatchNorms can be folded).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class Net:
    def __init__(self, seed: int, opset: int = 17) -> None:
        self.rng = np.random.default_rng(seed)
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.weights: list[onnx.TensorProto] = []

    def param(self, name: str, value: np.ndarray) -> str:
        self.weights.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str, outputs: int = 1, **attrs) -> str:
        names = [name] + [f"{name}.extra{i}" for i in range(1, outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=name, **attrs))
        return name

    def conv(self, x: str, cin: int, cout: int, name: str, k: int = 3) -> str:
        w = self.param(f"{name}.weight", self.rng.normal(0, 0.2, (cout, cin, k, k)))
        return self.op("Conv", [x, w], name, pads=[k // 2] * 4)

    def bn(self, x: str, c: int, name: str, *, mean=None, var=None, **attrs) -> str:
        params = [
            self.param(f"{name}.weight", self.rng.uniform(0.5, 1.5, c)),
            self.param(f"{name}.bias", self.rng.normal(0, 0.1, c)),
            self.param(
                f"{name}.running_mean", self.rng.normal(0, 0.5, c) if mean is None else mean
            ),
            self.param(f"{name}.running_var", self.rng.uniform(0.3, 2, c) if var is None else var),
        ]
        outputs = 3 if attrs.get("training_mode") else 1
        return self.op("BatchNormalization", [x, *params], name, outputs=outputs, **attrs)

    def save(self, path: Path, inputs: list, output: str) -> None:
        graph = helper.make_graph(
            self.nodes,
            path.stem,
            inputs,
            [helper.make_tensor_value_info(output, 1, None)],
            self.weights,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model.producer_name = "bnlint-examples"
        model = onnx.shape_inference.infer_shapes(model)
        onnx.save(model, str(path))


def image_input(batch: int | str = 1):
    return [helper.make_tensor_value_info("image", TensorProto.FLOAT, [batch, 3, 32, 32])]


def cnn(
    path: Path,
    seed: int,
    *,
    training: bool = False,
    untrained: bool = False,
    momentum: float | None = None,
    odd_eps: bool = False,
    dead_var: bool = False,
) -> None:
    net = Net(seed)
    x, cin = "image", 3
    for index, cout in enumerate((16, 32, 32)):
        attrs = {}
        if training:
            attrs["training_mode"] = 1
        if momentum is not None:
            attrs["momentum"] = momentum
        if odd_eps and index == 1:
            attrs["epsilon"] = 1e-3
        mean = np.zeros(cout) if untrained else None
        var = np.ones(cout) if untrained else None
        if dead_var and index == 2:
            var = net.rng.uniform(0.3, 2, cout)
            var[[3, 7]] = -0.5
            attrs["epsilon"] = 1e-5
        conv = net.conv(x, cin, cout, f"layer{index}.conv")
        x = net.op(
            "Relu",
            [net.bn(conv, cout, f"layer{index}.bn", mean=mean, var=var, **attrs)],
            f"layer{index}.relu",
        )
        cin = cout
    pooled = net.op("GlobalAveragePool", [x], "pool")
    flat = net.op("Flatten", [pooled], "flatten", axis=1)
    fc_w = net.param("fc.weight", net.rng.normal(0, 0.2, (10, cin)))
    fc_b = net.param("fc.bias", np.zeros(10))
    logits = net.op("Gemm", [flat, fc_w, fc_b], "fc", transB=1)
    net.save(path, image_input(), logits)


def wrong_axis_transformer(path: Path, seed: int) -> None:
    """BatchNorm1d(L) applied to (N, L, C) tokens: it normalises positions, not features."""
    net = Net(seed)
    tokens, length, width = "tokens", 16, 32
    proj = net.op(
        "MatMul", ["tokens", net.param("proj.weight", net.rng.normal(0, 0.2, (8, width)))], "proj"
    )
    normed = net.bn(proj, length, "ffn.norm")
    act = net.op("Relu", [normed], "ffn.act")
    out = net.op(
        "MatMul", [act, net.param("out.weight", net.rng.normal(0, 0.2, (width, 8)))], "out"
    )
    inputs = [helper.make_tensor_value_info(tokens, TensorProto.FLOAT, [4, length, 8])]
    net.save(path, inputs, out)


EXAMPLES = {
    "resnet_style_bn_preserved.onnx": lambda p: cnn(p, 0),
    "exported_in_training_mode.onnx": lambda p: cnn(p, 1, training=True),
    "untrained_statistics.onnx": lambda p: cnn(p, 2, untrained=True),
    "keras_momentum_and_odd_eps.onnx": lambda p: cnn(p, 3, momentum=0.01, odd_eps=True),
    "negative_running_variance.onnx": lambda p: cnn(p, 4, dead_var=True),
    "batchnorm1d_wrong_axis.onnx": lambda p: wrong_axis_transformer(p, 5),
}


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name, build in EXAMPLES.items():
        build(out / name)
    print(f"wrote {len(EXAMPLES)} example models to {out}/")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "examples/models")
