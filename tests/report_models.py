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
