"""BN008 dropout-before-batchnorm."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto
from torch import nn

from tests.helpers import Case, check_case, rule_findings
from tests.rules.torch_export import export_zoo
from tests.zoo.onnx_builder import GraphBuilder

CODE = "BN008"
OPTIONS = "dropout-before-batchnorm"
THROUGH_LAYERS = {"rule_options": {OPTIONS: {"through-weight-layers": True}}}


def mlp(order: str, ratio: float = 0.5, opset: int = 15):
    """fc1 -> BN -> ReLU, then the dropout placed as ``order`` says, then BN (``bn2``)."""

    def build():
        g = GraphBuilder(opset=opset)
        x = g.input("x", [8, 16])
        h = g.relu(g.bn(g.gemm(x, 32, name="fc1", bias=False), name="bn1"))
        if order == "dropout-bn":
            h = g.bn(g.dropout(h, name="drop", ratio=ratio), name="bn2")
        elif order == "dropout-reshape-bn":
            (h,) = g.node(
                "Reshape",
                [g.dropout(h, name="drop", ratio=ratio), g.param("s", np.array([8, 32, 1]))],
            )
            h = g.bn(h, name="bn2", c=32)
        elif order == "dropout-linear-bn":
            h = g.bn(g.gemm(g.dropout(h, name="drop", ratio=ratio), 32, name="fc2"), name="bn2")
        elif order == "bn-dropout":
            h = g.dropout(g.bn(g.gemm(h, 32, name="fc2"), name="bn2"), name="drop", ratio=ratio)
        return g.model([g.gemm(h if order != "dropout-reshape-bn" else g.flatten(h), 4)])

    return build


def dropout_feeding_two_bns():
    g = GraphBuilder()
    x = g.input("x", [8, 3, 8, 8])
    h = g.dropout(g.relu(g.conv(x, 8)), name="drop", ratio=0.2)
    return g.model([g.bn(h, name="bn_a"), g.bn(h, name="bn_b")])


def runtime_ratio():
    g = GraphBuilder()
    x = g.input("x", [8, 16])
    ratio = g.input("ratio", [], elem_type=TensorProto.FLOAT)
    (dropped,) = g.node("Dropout", [x, ratio], name="drop")
    return g.model([g.bn(dropped, name="bn", c=16)])


POSITIVE = [
    Case(
        "dropout-bn",
        mlp("dropout-bn"),
        ["drop"],
        severity="warning",
        evidence={"ratio": 0.5, "batchnorms": ["bn2"], "weight_layers": []},
    ),
    Case("through-reshape", mlp("dropout-reshape-bn"), ["drop"]),
    Case(
        "opset10-ratio-attribute", mlp("dropout-bn", 0.25, 10), ["drop"], evidence={"ratio": 0.25}
    ),
    Case(
        "one-finding-per-dropout",
        dropout_feeding_two_bns,
        ["drop"],
        evidence={"batchnorms": ["bn_a", "bn_b"]},
    ),
    Case(
        "through-weight-layer-when-enabled",
        mlp("dropout-linear-bn"),
        ["drop"],
        settings=THROUGH_LAYERS,
        evidence={"weight_layers": ["fc2"]},
    ),
    Case("ratio-unknown", runtime_ratio, ["drop"], message="p computed at run time"),
    Case("training-phase", mlp("dropout-bn"), ["drop"], settings={"phase": "training"}),
]
NEGATIVE = [
    Case("dropout-after-bn", mlp("bn-dropout"), []),
    Case("ratio-zero", mlp("dropout-bn", ratio=0.0), []),
    Case("ratio-zero-opset10", mlp("dropout-bn", 0.0, 10), []),
    Case("through-weight-layer-by-default", mlp("dropout-linear-bn"), []),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn008(case: Case) -> None:
    check_case(CODE, case)


@pytest.mark.parametrize(
    "name", ["resnet_small", "mobilenet_block", "se_block", "transformer_bn1d"]
)
def test_silent_on_real_networks(name: str) -> None:
    assert rule_findings(CODE, Case(name, lambda: export_zoo(name))) == []


def dropout_before_second_bn(model: nn.Module) -> None:
    model.net.insert(4, nn.Dropout(0.3))  # Linear(net.3) -> Dropout(net.4) -> BN(net.5)


def dropout_before_second_linear(model: nn.Module) -> None:
    model.net.insert(3, nn.Dropout(0.3))  # ReLU -> Dropout(net.3) -> Linear(net.4) -> BN


def test_real_mlp_exported_for_training() -> None:
    settings = {"phase": "training"}
    direct = Case("direct", lambda: export_zoo("mlp_bn", dropout_before_second_bn, train=True))
    direct.settings = settings
    (finding,) = rule_findings(CODE, direct)
    assert finding.scope == "net.4" and finding.evidence["ratio"] == pytest.approx(0.3)
    assert finding.evidence["batchnorms"] == ["/net/net.5/BatchNormalization"]

    via = Case("via", lambda: export_zoo("mlp_bn", dropout_before_second_linear, train=True))
    via.settings = settings
    assert rule_findings(CODE, via) == []
    via.settings = {**settings, **THROUGH_LAYERS}
    assert [f.scope for f in rule_findings(CODE, via)] == ["net.3"]
