"""BN009 batchnorm-wrong-axis."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import Case, check_case, rule_findings
from tests.rules.torch_export import export_zoo
from tests.zoo.onnx_builder import GraphBuilder

CODE = "BN009"


def linear_then_bn(
    shape: list[int],
    features: int,
    bn_channels: int,
    *,
    between: str | None = None,
    reshape_to: list[int] | None = None,
):
    """x -> MatMul(features) [-> between] [-> Reshape] -> BatchNormalization(bn_channels)."""

    def build():
        g = GraphBuilder(opset=17)  # LayerNormalization needs opset 17
        x = g.input("x", shape)
        h = g.matmul(x, features, name="fc", cin=shape[-1])
        if between == "bias-relu":
            h = g.relu(g.add(h, g.param("fc.bias", np.full(features, 0.1))))
        elif between == "layernorm":
            scale, bias = g.param("ln.w", np.ones(features)), g.param("ln.b", np.zeros(features))
            (h,) = g.node("LayerNormalization", [h, scale, bias], name="ln", axis=-1)
        elif between == "transpose":
            (h,) = g.node("Transpose", [h], perm=[0, 2, 1])
        if reshape_to is not None:
            (h,) = g.node("Reshape", [h, g.param("target", np.array(reshape_to))], name="reshape")
        out = g.bn(h, name="bn", c=bn_channels)
        if between == "transpose":
            (out,) = g.node("Transpose", [out], perm=[0, 2, 1])
        return g.model([out])

    return build


def conv1d_bn():
    g = GraphBuilder()
    x = g.input("x", [2, 8, 16])
    return g.model([g.relu(g.bn(g.conv(x, 32, dims=1, name="conv"), name="bn"))])


def gemm_bn1d():
    g = GraphBuilder()
    x = g.input("x", [16, 8])
    return g.model([g.relu(g.bn(g.gemm(x, 32, name="fc"), name="bn"))])


POSITIVE = [
    Case(
        "bn1d-seq-len-on-N-L-C",
        linear_then_bn([2, 16, 8], 32, 16),
        ["bn"],
        severity="error",
        evidence={"input_shape": [2, 16, 32], "channels": 16, "feature_size": 32},
    ),
    Case(
        "through-bias-and-relu",
        linear_then_bn([2, 16, 8], 32, 16, between="bias-relu"),
        ["bn"],
        evidence={"through": ["Relu", "Add"]},
    ),
    Case("after-layernorm", linear_then_bn([2, 16, 8], 32, 16, between="layernorm"), ["bn"]),
    Case("channels-last-rank-4", linear_then_bn([2, 4, 6, 8], 12, 4), ["bn"]),
    Case("seq-len-equals-features", linear_then_bn([2, 16, 8], 16, 16), ["bn"]),
    Case(
        "reshape-keeps-last-axis",
        linear_then_bn([2, 4, 4, 8], 12, 16, reshape_to=[2, 16, 12]),
        ["bn"],
    ),
]
NEGATIVE = [
    Case("bn1d-on-N-C-features", gemm_bn1d, []),
    Case("transposed-N-C-L", linear_then_bn([2, 16, 8], 32, 32, between="transpose"), []),
    Case("conv1d-output", conv1d_bn, []),
    Case(
        "reshape-moves-last-axis",
        linear_then_bn([2, 16, 8], 32, 32, reshape_to=[2, 32, 16]),
        [],
    ),
    Case("channel-mismatch-is-bn010", linear_then_bn([2, 16, 8], 32, 32), []),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn009(case: Case) -> None:
    check_case(CODE, case)


def test_real_transformer_wrong_and_right_axis() -> None:
    wrong = Case("wrong", lambda: export_zoo("transformer_bn1d_wrong_axis"))
    findings = rule_findings(CODE, wrong)
    assert [finding.scope for finding in findings] == ["layers.0.bn", "layers.1.bn"]
    assert findings[0].evidence["input_shape"] == [2, 16, 64]
    assert findings[0].evidence["channels"] == 16

    right = Case("right", lambda: export_zoo("transformer_bn1d"))
    assert rule_findings(CODE, right) == []


@pytest.mark.parametrize("name", ["resnet_small", "mobilenet_block", "se_block"])
def test_silent_on_real_convnets(name: str) -> None:
    assert rule_findings(CODE, Case(name, lambda: export_zoo(name))) == []
