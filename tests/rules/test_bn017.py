"""BN017 double-normalization."""

from __future__ import annotations

import numpy as np
import pytest
from torch import nn

from tests.helpers import Case, check_case, rule_findings
from tests.rules.torch_export import export_zoo
from tests.zoo.onnx_builder import GraphBuilder

CODE = "BN017"


def norm(g: GraphBuilder, op: str, x: str, name: str, channels: int) -> str:
    if op == "BatchNormalization":
        return g.bn(x, name=name, c=channels)
    scale = g.param(f"{name}.weight", np.ones(channels))
    bias = g.param(f"{name}.bias", np.zeros(channels))
    attrs = {"axis": -1} if op == "LayerNormalization" else {}
    (out,) = g.node(op, [x, scale, bias], name=name, **attrs)
    g.channels[out] = channels
    return out


def conv_norms(first: str, second: str, between: list[str] | None = None):
    """Conv -> first norm [-> between ops] -> second norm -> Relu, on (1, 8, 6, 6)."""

    def build():
        g = GraphBuilder(opset=18)
        x = g.input("x", [1, 3, 6, 6])
        h = norm(g, first, g.conv(x, 8, name="conv"), "norm1", 8)
        for op in between or []:
            h = g.unary(op, h, name=op.lower())
        return g.model([g.relu(norm(g, second, h, "norm2", 8))])

    return build


def layernorm_then_bn1d():
    """Tokens (N, L, C): LayerNorm over C, transpose to (N, C, L), BatchNorm1d(C)."""
    g = GraphBuilder(opset=18)
    x = g.input("x", [2, 16, 8])
    h = norm(g, "LayerNormalization", x, "ln", 8)
    (h,) = g.node("Transpose", [h], perm=[0, 2, 1], name="transpose")
    return g.model([norm(g, "BatchNormalization", h, "bn", 8)])


def norm_add_norm():
    g = GraphBuilder(opset=18)
    x = g.input("x", [1, 8, 6, 6])
    h = norm(g, "BatchNormalization", g.conv(x, 8), "bn1", 8)
    return g.model([norm(g, "BatchNormalization", g.add(h, x), "bn2", 8)])


BN, IN, LN = "BatchNormalization", "InstanceNormalization", "LayerNormalization"

POSITIVE = [
    Case(
        "bn-bn",
        conv_norms(BN, BN),
        ["norm2"],
        severity="info",
        evidence={"first": "norm1", "first_op": BN, "second_op": BN, "through": []},
    ),
    Case("bn-instancenorm", conv_norms(BN, IN), ["norm2"]),
    Case("instancenorm-bn", conv_norms(IN, BN), ["norm2"]),
    Case(
        "bn-identity-dropout-bn",
        conv_norms(BN, BN, ["Identity", "Dropout"]),
        ["norm2"],
        evidence={"through": ["Identity", "Dropout"]},
    ),
    Case("layernorm-transpose-bn1d", layernorm_then_bn1d, ["bn"], message="→ Transpose"),
]
NEGATIVE = [
    Case("bn-relu-bn", conv_norms(BN, BN, ["Relu"]), []),
    Case("bn-add-bn", norm_add_norm, []),
    Case("bn-sigmoid-instancenorm", conv_norms(BN, IN, ["Sigmoid"]), []),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn017(case: Case) -> None:
    check_case(CODE, case)


@pytest.mark.parametrize(
    "name", ["resnet_small", "mobilenet_block", "se_block", "transformer_bn1d"]
)
def test_silent_on_real_networks(name: str) -> None:
    assert rule_findings(CODE, Case(name, lambda: export_zoo(name))) == []


def double_stem_bn(model: nn.Module) -> None:
    model.bn1 = nn.Sequential(model.bn1, nn.BatchNorm2d(model.bn1.num_features).eval())


def test_real_network_with_a_doubled_batchnorm() -> None:
    case = Case("double", lambda: export_zoo("resnet_small", double_stem_bn))
    findings = rule_findings(CODE, case)
    assert [finding.scope for finding in findings] == ["bn1.1"]
    assert findings[0].evidence["first_op"] == "BatchNormalization"
