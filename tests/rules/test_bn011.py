"""BN011 foldable-batchnorm: a verdict for every BN, with the reason when it cannot fold."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import Case, check_case, rule_findings
from tests.zoo.onnx_builder import GraphBuilder


def conv_bn():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 8, 8])
    return g.model([g.relu(g.bn(g.conv(x, 4, name="conv"), name="bn"))])


def producer_with_two_consumers():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 8, 8])
    c = g.conv(x, 4, name="conv")
    return g.model([g.add(g.bn(c, name="bn"), c)])


def bn_params_are_graph_inputs():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 8, 8])
    c = g.conv(x, 4, name="conv")
    params = [g.param(f"p{i}", np.ones(4), as_input=True) for i in range(4)]
    return g.model([g.bn(c, name="bn", params=params)])


def bn_on_graph_input():
    g = GraphBuilder()
    x = g.input("x", [1, 4, 8, 8])
    return g.model([g.relu(g.bn(x, name="bn"))])


def bn_before_unpadded_conv():
    g = GraphBuilder()
    x = g.input("x", [1, 4, 8, 8])
    return g.model([g.conv(g.bn(x, name="bn"), 8, k=1, pads=[0, 0, 0, 0], name="conv")])


def gemm_bn():
    g = GraphBuilder()
    x = g.input("x", [2, 16])
    return g.model([g.bn(g.gemm(x, 8, name="fc"), name="bn")])


def matmul_add_bn():
    g = GraphBuilder()
    x = g.input("x", [2, 16])
    h = g.matmul(x, 8, name="mm")
    bias = g.param("mm.bias", np.zeros(8))
    (added,) = g.node("Add", [h, bias], name="add")
    g.channels[added] = 8
    return g.model([g.bn(added, name="bn")])


def training_bn():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 8, 8])
    return g.model([g.bn(g.conv(x, 4), name="bn", training=True)])


POSITIVE = [
    Case(
        "conv-bn",
        conv_bn,
        ["bn"],
        severity="info",
        evidence={"foldable": True, "kind": "conv", "producer": "conv"},
    ),
    Case("gemm-bn", gemm_bn, ["bn"], evidence={"foldable": True, "kind": "gemm"}),
    Case("matmul-add-bn", matmul_add_bn, ["bn"], evidence={"foldable": True, "kind": "matmul_add"}),
    Case(
        "forward-into-unpadded-conv",
        bn_before_unpadded_conv,
        ["bn"],
        evidence={"foldable": True, "kind": "forward_conv"},
    ),
    Case(
        "shared-output",
        producer_with_two_consumers,
        ["bn"],
        evidence={"foldable": False, "reason_code": "producer-shared-output"},
    ),
    Case(
        "overridable-params",
        bn_params_are_graph_inputs,
        ["bn"],
        evidence={"foldable": False, "reason_code": "parameter-overridable"},
    ),
    Case(
        "no-producer",
        bn_on_graph_input,
        ["bn"],
        evidence={"foldable": False, "reason_code": "no-producer"},
    ),
    Case(
        "training-mode",
        training_bn,
        ["bn"],
        evidence={"foldable": False, "reason_code": "training-mode"},
    ),
]
NEGATIVE = [
    Case("training-phase", conv_bn, [], settings={"phase": "training"}),
    Case("no-batchnorm", lambda: _conv_relu(), []),
]


def _conv_relu():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 8, 8])
    return g.model([g.relu(g.conv(x, 4))])


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn011(case: Case) -> None:
    check_case("BN011", case)


def test_padded_conv_after_bn_is_not_a_forward_fold() -> None:
    def build():
        g = GraphBuilder()
        x = g.input("x", [1, 4, 8, 8])
        return g.model([g.conv(g.bn(x, name="bn"), 8, k=3, name="conv")])

    (finding,) = rule_findings("BN011", Case("padded", build, ["bn"]))
    assert finding.evidence["foldable"] is False
    assert finding.evidence["reason_code"] == "no-producer"
