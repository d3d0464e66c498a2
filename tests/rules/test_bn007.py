"""BN007 redundant-bias-before-norm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bnlint.config import Settings
from bnlint.loaders.onnx import build_graph
from tests.helpers import Case, check_case, rule_findings
from tests.rules.torch_export import export_zoo
from tests.zoo.onnx_builder import GraphBuilder

CODE = "BN007"


def conv_with_bias(g: GraphBuilder, x: str, cout: int, bias: np.ndarray, name: str) -> str:
    weight = g.param(f"{name}.weight", g.rng.normal(0, 0.3, (cout, g.channels[x], 3, 3)))
    (out,) = g.node("Conv", [x, weight, g.param(f"{name}.bias", bias)], name=name, pads=[1] * 4)
    g.channels[out] = cout
    return out


def conv_bn(bias: str = "random", between: str | None = None):
    def build():
        g = GraphBuilder()
        x = g.input("x", [1, 3, 8, 8])
        values = {"random": np.linspace(-0.5, 0.5, 4), "zero": np.zeros(4)}[bias]
        h = conv_with_bias(g, x, 4, values, "conv")
        if between is not None:
            h = g.unary(between, h, **({"to": 1} if between == "Cast" else {}))
        return g.model([g.relu(g.bn(h, name="bn"))])

    return build


def conv_without_bias():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 8, 8])
    return g.model([g.bn(g.conv(x, 4, name="conv", bias=False), name="bn")])


def gemm_bn():
    g = GraphBuilder()
    x = g.input("x", [4, 16])
    return g.model([g.relu(g.bn(g.gemm(x, 8, name="fc"), name="bn"))])


def matmul_add_bn(rank: int):
    """MatMul + bias Add -> BN; rank 3 is BN on (N, L, C), which does not normalize C."""

    def build():
        g = GraphBuilder()
        x = g.input("x", [4, 16] if rank == 2 else [4, 8, 16])
        h = g.matmul(x, 8, name="mm", cin=16)
        (biased,) = g.node("Add", [h, g.param("mm.bias", np.full(8, 0.3))], name="mm.add")
        return g.model([g.bn(biased, name="bn", c=8)])

    return build


def gemm_beta_zero_bn():
    g = GraphBuilder()
    x = g.input("x", [4, 16])
    return g.model([g.bn(g.gemm(x, 8, name="fc", beta=0.0), name="bn")])


def conv_transpose_bn():
    g = GraphBuilder()
    x = g.input("x", [1, 4, 4, 4])
    return g.model([g.bn(g.conv_transpose(x, 6, name="deconv"), name="bn")])


def shared_output():
    g = GraphBuilder()
    x = g.input("x", [1, 4, 8, 8])
    h = g.conv(x, 4, name="conv")
    return g.model([g.add(g.bn(h, name="bn"), h)])


def output_also_graph_output():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 8, 8])
    h = g.conv(x, 4, name="conv")
    return g.model([g.bn(h, name="bn"), h])


def bn_after_activation():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 8, 8])
    return g.model([g.bn(g.relu(g.conv(x, 4, name="conv")), name="bn")])


POSITIVE = [
    Case(
        "conv-bias-bn",
        conv_bn(),
        ["conv"],
        severity="info",
        evidence={"bias": "conv.bias", "batchnorm": "bn", "channels": 4, "bias_max_abs": 0.5},
    ),
    Case("through-identity", conv_bn(between="Identity"), ["conv"]),
    Case("through-cast", conv_bn(between="Cast"), ["conv"]),
    Case("gemm-bn1d", gemm_bn, ["fc"]),
    Case("matmul-add-bn1d", matmul_add_bn(rank=2), ["mm"], evidence={"bias": "mm.bias"}),
    Case("conv-transpose-bn", conv_transpose_bn, ["deconv"]),
    Case("training-phase", conv_bn(), ["conv"], settings={"phase": "training"}),
]
NEGATIVE = [
    Case("zero-bias", conv_bn(bias="zero"), []),
    Case("no-bias", conv_without_bias, []),
    Case("output-shared-with-residual", shared_output, []),
    Case("output-is-graph-output", output_also_graph_output, []),
    Case("bias-not-on-normalized-axis", matmul_add_bn(rank=3), []),
    Case("bn-after-activation", bn_after_activation, []),
    Case("gemm-beta-zero-ignores-bias", gemm_beta_zero_bn, []),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn007(case: Case) -> None:
    check_case(CODE, case)


def test_evidence_has_bias_norm() -> None:
    (finding,) = rule_findings(CODE, Case("conv", conv_bn()))
    expected = float(np.linalg.norm(np.linspace(-0.5, 0.5, 4).astype(np.float32)))
    assert finding.evidence["bias_norm"] == pytest.approx(expected, rel=1e-6)


def add_stem_bias(model: nn.Module) -> None:
    with torch.no_grad():
        model.conv1.bias = nn.Parameter(torch.linspace(-1, 1, model.conv1.out_channels))


@pytest.mark.parametrize("name", ["resnet_small", "se_block", "mobilenet_block"])
def test_silent_on_real_networks(name: str) -> None:
    """Bias-free convs before BN; the SE convs' biases feed a ReLU/Sigmoid, not a BN."""
    assert rule_findings(CODE, Case(name, lambda: export_zoo(name))) == []


def test_real_network_with_a_biased_stem() -> None:
    case = Case("stem-bias", lambda: export_zoo("resnet_small", add_stem_bias))
    assert [finding.scope for finding in rule_findings(CODE, case)] == ["conv1"]


def test_dynamo_zero_bias_plumbing_is_silent() -> None:
    """dynamo=True, optimize=False gives bias-free convs a Shape->Expand->CastLike zero bias."""
    model = export_zoo("resnet_small", dynamo=True)
    graph = build_graph(model, Path("resnet_small.onnx"), Settings())
    biases = [graph.param(conv.input("bias")) for conv in graph.nodes_of("conv")]
    assert biases and all(b is not None and not b.any() for b in biases), "no zero biases"
    assert graph.nodes_of("batch_norm"), "the export must keep its BatchNorm nodes"
    assert rule_findings(CODE, Case("dynamo", lambda: model)) == []
