"""BN001 missing-norm-before-activation."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from tests.helpers import Case, check_case, rule_findings
from tests.rules.torch_export import export_zoo
from tests.zoo.onnx_builder import GraphBuilder

CODE = "BN001"
OPTIONS = "missing-norm-before-activation"


def conv_bn_relu(g: GraphBuilder, x: str, cout: int, name: str) -> str:
    return g.relu(g.bn(g.conv(x, cout, name=name, bias=False), name=f"{name}.bn"))


def layer_norm(g: GraphBuilder, x: str, dim: int, name: str) -> str:
    scale = g.param(f"{name}.weight", np.ones(dim))
    bias = g.param(f"{name}.bias", np.zeros(dim))
    (out,) = g.node("LayerNormalization", [x, scale, bias], name=name, axis=-1)
    g.channels[out] = g.channels.get(x, dim)
    return out


def cnn_with_unnormalized_conv():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 16, 16])
    h = conv_bn_relu(g, x, 8, "conv1")
    h = conv_bn_relu(g, h, 8, "conv2")
    h = g.relu(g.conv(h, 8, name="conv3"))  # the forgotten BatchNorm
    h = conv_bn_relu(g, h, 8, "conv4")
    return g.model([g.conv(h, 2, k=1, name="out")])


def residual_branch_without_norm():
    g = GraphBuilder()
    x = g.input("x", [1, 8, 16, 16])
    h = conv_bn_relu(g, x, 8, "block.conv1")
    h = g.relu(g.add(g.conv(h, 8, name="block.conv2"), x))  # conv -> Add -> Relu
    h = conv_bn_relu(g, h, 8, "next.conv1")
    return g.model([conv_bn_relu(g, h, 8, "next.conv2")])


def mlp_with_unnormalized_linear():
    g = GraphBuilder()
    x = g.input("x", [32, 16])
    h = g.relu(g.bn(g.gemm(x, 32, name="fc1", bias=False), name="bn1"))
    h = g.relu(g.bn(g.gemm(h, 32, name="fc2", bias=False), name="bn2"))
    mm = g.matmul(h, 32, name="fc3")  # MatMul + bias Add -> Relu
    (biased,) = g.node("Add", [mm, g.param("fc3.bias", np.full(32, 0.1))], name="fc3.add")
    g.channels[biased] = 32
    return g.model([g.gemm(g.relu(biased), 10, name="head")])


def unnormalized_stem():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 16, 16])
    h = g.relu(g.conv(x, 8, name="stem"))
    h = conv_bn_relu(g, conv_bn_relu(g, h, 8, "conv1"), 8, "conv2")
    return g.model([g.conv(h, 4, k=1, name="out")])


def classifier_head(kind: str):
    """A BN CNN + pool + MLP head; the head ends in nothing, Softmax or Sigmoid."""

    def build():
        g = GraphBuilder()
        x = g.input("x", [1, 3, 16, 16])
        h = conv_bn_relu(g, conv_bn_relu(g, x, 8, "conv1"), 8, "conv2")
        logits = g.gemm(g.flatten(g.global_pool(h)), 10, name="fc")
        if kind == "softmax":
            logits = g.unary("Softmax", logits, axis=-1)
        elif kind == "sigmoid":
            logits = g.unary("Sigmoid", logits)
        return g.model([logits])

    return build


def segmentation_head_with_sigmoid():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 16, 16])
    h = conv_bn_relu(g, conv_bn_relu(g, x, 8, "conv1"), 8, "conv2")
    return g.model([g.unary("Sigmoid", g.conv(h, 1, k=1, name="mask"))])


def vgg_bn_classifier():
    """Normalized features, unnormalized Linear -> ReLU classifier on flattened features."""
    g = GraphBuilder()
    x = g.input("x", [1, 3, 8, 8])
    h = conv_bn_relu(g, conv_bn_relu(g, x, 8, "features.0"), 8, "features.3")
    h = conv_bn_relu(g, h, 8, "features.6")
    h = g.relu(g.gemm(g.flatten(h), 32, name="classifier.0"))
    h = g.relu(g.gemm(g.dropout(h, ratio=0.5), 32, name="classifier.3"))
    return g.model([g.gemm(h, 10, name="classifier.6")])


def se_block():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 16, 16])
    h = conv_bn_relu(g, conv_bn_relu(g, x, 16, "conv1"), 16, "conv2")
    squeeze = g.global_pool(h)
    gate = g.unary("Sigmoid", g.conv(g.relu(g.conv(squeeze, 4, k=1, name="se.fc1")), 16, k=1))
    (scaled,) = g.node("Mul", [h, gate], name="se.mul")
    g.channels[scaled] = 16
    return g.model([conv_bn_relu(g, scaled, 16, "conv3")])


def transformer_ffn(hybrid: bool):
    """Pre-LN FFN (LayerNorm -> Linear -> Gelu -> Linear + residual), alone or after a BN CNN."""

    def build():
        g = GraphBuilder(opset=20)
        if hybrid:
            x = g.input("x", [1, 3, 4, 4])
            h = conv_bn_relu(g, conv_bn_relu(g, x, 16, "conv1"), 16, "conv2")
            h = conv_bn_relu(g, h, 16, "conv3")
            (tokens,) = g.node("Reshape", [h, g.param("shape", np.array([1, 16, 16]))])
            (tokens,) = g.node("Transpose", [tokens], perm=[0, 2, 1])
            g.channels[tokens] = 16
        else:
            tokens = g.input("x", [1, 16, 16])
        for layer in range(2):
            normed = layer_norm(g, tokens, 16, f"layers.{layer}.norm")
            hidden = g.unary("Gelu", g.matmul(normed, 64, name=f"layers.{layer}.fc1"))
            tokens = g.add(tokens, g.matmul(hidden, 16, name=f"layers.{layer}.fc2"))
        return g.model([tokens])

    return build


def folded_network():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 16, 16])
    h = x
    for index in range(4):
        h = g.relu(g.conv(h, 8, name=f"conv{index}"))
    return g.model([h])


def mostly_unnormalized():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 16, 16])
    h = conv_bn_relu(g, x, 8, "conv1")
    h = g.relu(g.conv(h, 8, name="conv2"))
    return g.model([g.relu(g.conv(h, 8, name="conv3"))])


def post_activation_norm():
    """conv -> relu -> BN ordering counts as normalized, never as missing."""
    g = GraphBuilder()
    x = g.input("x", [1, 3, 16, 16])
    h = conv_bn_relu(g, x, 8, "conv1")
    h = g.bn(g.relu(g.conv(h, 8, name="conv2")), name="conv2.bn")
    return g.model([conv_bn_relu(g, h, 8, "conv3")])


POSITIVE = [
    Case(
        "forgotten-bn",
        cnn_with_unnormalized_conv,
        ["conv3"],
        severity="warning",
        evidence={"activation_kind": "relu", "normalized_layers": 3, "comparable_layers": 4},
    ),
    Case(
        "residual-branch",
        residual_branch_without_norm,
        ["block.conv2"],
        evidence={"through": ["Add"]},
    ),
    Case(
        "matmul-add-linear",
        mlp_with_unnormalized_linear,
        ["fc3"],
        evidence={"through": ["Add"], "norm_ops": ["BatchNormalization"]},
    ),
    Case("stem", unnormalized_stem, ["stem"], message="2 of 3 comparable layers"),
    Case(
        "pooled-heads-when-not-skipped",
        vgg_bn_classifier,
        ["classifier.0", "classifier.3"],
        settings={"rule_options": {OPTIONS: {"skip-pooled": False}}},
    ),
    # Without skip-pooled the SE reduce conv (-> Relu) is reported; the expand conv feeds a
    # Sigmoid gate, which is not a hidden activation.
    Case(
        "se-reduce-conv-when-pooled-not-skipped",
        se_block,
        ["se.fc1"],
        settings={"rule_options": {OPTIONS: {"skip-pooled": False}}},
    ),
]
NEGATIVE = [
    Case("classifier-head-no-activation", classifier_head("none"), []),
    Case("classifier-head-softmax", classifier_head("softmax"), []),
    Case(
        "classifier-head-sigmoid-output",
        classifier_head("sigmoid"),
        [],
        settings={"rule_options": {OPTIONS: {"skip-pooled": False}}},
    ),
    Case("segmentation-head-sigmoid-output", segmentation_head_with_sigmoid, []),
    Case("vgg-bn-classifier-on-flattened-features", vgg_bn_classifier, []),
    Case("squeeze-excitation", se_block, []),
    Case("transformer-ffn-layernorm", transformer_ffn(hybrid=False), []),
    Case("hybrid-cnn-transformer-pre-norm", transformer_ffn(hybrid=True), []),
    Case("folded-network-no-norm-anywhere", folded_network, []),
    Case("mostly-unnormalized", mostly_unnormalized, []),
    Case("post-activation-norm", post_activation_norm, []),
    Case(
        "stem-ignored-by-regex",
        unnormalized_stem,
        [],
        settings={"rule_options": {OPTIONS: {"ignore": ["^stem$"]}}},
    ),
    Case(
        "fraction-threshold-raised",
        unnormalized_stem,
        [],
        settings={"rule_options": {OPTIONS: {"min-normalized-fraction": 0.7}}},
    ),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn001(case: Case) -> None:
    check_case(CODE, case)


@pytest.mark.parametrize(
    "name", ["resnet_small", "mobilenet_block", "se_block", "transformer_bn1d"]
)
def test_silent_on_real_networks(name: str) -> None:
    assert rule_findings(CODE, Case(name, lambda: export_zoo(name))) == []


def test_real_resnet_with_a_removed_batchnorm() -> None:
    def drop_bn(model: nn.Module) -> None:
        model.layer1[0].bn1 = nn.Identity()

    findings = rule_findings(CODE, Case("resnet", lambda: export_zoo("resnet_small", drop_bn)))
    assert [finding.scope for finding in findings] == ["layer1.0.conv1"]
    assert findings[0].evidence["activation"].endswith("relu/Relu")
