"""Models for the report tests: several models, several findings, one unreadable file.

Every model is built in code. The node names include HTML, Markdown and workflow-command
syntax so each format's escaping is exercised on real findings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from tests.zoo import onnx_zoo
from tests.zoo.onnx_builder import GraphBuilder

XSS_NODE = "<img src=x onerror=alert(1)>"
MARKUP_NODE = "a|b`c*d_[e]\nf::error::"


def hostile_names(folder: Path) -> Path:
    """Two training-mode BNs named like an HTML payload and like Markdown/workflow syntax."""
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 3, 8, 8])
    h = g.relu(g.bn(g.conv(x, 4, name="conv1", bias=False), name=XSS_NODE, training=True))
    h = g.relu(g.bn(g.conv(h, 4, name="conv2", bias=False), name=MARKUP_NODE, training=True))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "hostile.onnx"
    onnx.save(g.model([h]), str(path))
    return path


def degenerate_layer(folder: Path) -> Path:
    """Two healthy BNs, then a head BN with a big gamma, tiny variances, one negative."""
    g = GraphBuilder(opset=17)
    x = g.input("x", [1, 3, 8, 8])
    h = g.relu(g.bn(g.conv(x, 8, name="stem.conv", bias=False), name="stem.bn"))
    h = g.relu(g.bn(g.conv(h, 8, name="mid.conv", bias=False), name="mid.bn"))
    c = 8
    names = [
        g.param("head.bn.weight", np.full(c, 40.0)),
        g.param("head.bn.bias", np.zeros(c)),
        g.param("head.bn.running_mean", np.zeros(c)),
        g.param("head.bn.running_var", np.r_[np.full(c - 1, 1e-3), -0.5]),
    ]
    h = g.relu(g.bn(g.conv(h, c, name="head.conv", bias=False), name="head.bn", params=names))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "degenerate.onnx"
    onnx.save(g.model([h]), str(path))
    return path


def repeated_findings(folder: Path) -> Path:
    """Six conv-BN-ReLU blocks with a Keras momentum ported as is (BN015 on all six: one
    group of six) and one odd epsilon (BN014, alone)."""
    g = GraphBuilder(opset=17)
    h = g.input("x", [1, 3, 8, 8])
    for block in range(6):
        eps = 1e-3 if block == 4 else 1e-5
        conv = g.conv(h, 8, name=f"block{block}.conv", bias=False)
        h = g.relu(g.bn(conv, name=f"block{block}.bn", momentum=0.01, eps=eps))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "repeated.onnx"
    onnx.save(g.model([h]), str(path))
    return path


def build_models(folder: Path) -> list[Path]:
    """Six inputs in a fixed order: five readable models and one corrupt file."""
    folder.mkdir(parents=True, exist_ok=True)
    corrupt = folder / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 definitely not protobuf")
    return [
        onnx_zoo.opset14_training_mode(folder / "training"),
        onnx_zoo.resnet_opset15(folder / "resnet"),
        hostile_names(folder / "hostile"),
        degenerate_layer(folder / "degenerate"),
        repeated_findings(folder / "repeated"),
        corrupt,
    ]


def conv_bn_relu(g: GraphBuilder, x: str, name: str, var: np.ndarray, **kwargs) -> str:
    """Conv ``name.conv`` (with a bias) -> BatchNormalization ``name`` whose running
    variance is ``var`` -> Relu ``name.relu``; ``kwargs`` go to :meth:`GraphBuilder.bn`."""
    c = len(var)
    rng = np.random.default_rng(len(name))
    params = [
        g.param(f"{name}.weight", rng.uniform(0.5, 1.5, c)),
        g.param(f"{name}.bias", rng.normal(0, 0.1, c)),
        g.param(f"{name}.running_mean", rng.normal(0, 0.5, c)),
        g.param(f"{name}.running_var", var),
    ]
    conv = g.conv(x, c, name=f"{name}.conv")
    return g.relu(g.bn(conv, name=name, params=params, **kwargs), name=f"{name}.relu")


def deep_chain(folder: Path, layers: int = 1000) -> Path:
    """``layers`` blocks, each with a negative variance (BN006) and a Conv bias (BN007),
    every other one in training mode (BN003): 2,500 findings at 1,000 layers, all on
    layers whose statistics stand out."""
    g = GraphBuilder(opset=15)
    h = g.input("x", [2, 4, 4, 4])
    for i in range(layers):
        var = np.array([-0.1 * (1 + i % 7), 1.0, 1.0, 1.0])
        h = conv_bn_relu(g, h, f"block{i}.bn", var, training=i % 2 == 0)
    return onnx_zoo._save(g.model([h]), folder, "deep")


def baselined_model(folder: Path, extra: bool) -> Path:
    """``folder/m.onnx``: a training-mode BN ``first`` (BN003) after a Conv with a bias
    (BN007); with ``extra``, a layer ``later`` with a negative variance (BN006, BN007)
    after it, so graph order puts the findings of ``first`` before the new ones."""
    g = GraphBuilder(opset=15)
    h = conv_bn_relu(g, g.input("x", [2, 3, 8, 8]), "first", np.full(4, 1.0), training=True)
    if extra:
        h = conv_bn_relu(g, h, "later", np.array([1.0, -0.5, 1.0, 1.0]))
    return onnx_zoo._save(g.model([h]), folder, "m")


def many_models(folder: Path, count: int) -> Path:
    """``count`` models of two training-mode layers with a negative variance and a Conv
    bias each (BN003, BN006, BN007 twice: 6 findings a model)."""
    for index in range(count):
        g = GraphBuilder(opset=15, seed=index)
        h = g.input("x", [2, 4, 4, 4])
        for layer in range(2):
            var = np.array([-0.5, 1.0, 1.0, 1.0])
            h = conv_bn_relu(g, h, f"b{layer}.bn", var, training=True)
        onnx_zoo._save(g.model([h]), folder, f"model{index:03d}")
    return folder
