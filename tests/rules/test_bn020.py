"""BN020 overridable-bn-parameters."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import Case, check_case
from tests.rules.param_models import bn_scopes, conv_bn, exported
from tests.zoo.onnx_builder import GraphBuilder

ALL_ROLES = ("scale", "bias", "mean", "var")


def conv_weight_is_input():
    g = GraphBuilder()
    x = g.input("x", [1, 3, 8, 8])
    weight = g.param("conv.weight", np.ones((4, 3, 3, 3)), as_input=True)
    (h,) = g.node("Conv", [x, weight], name="conv", pads=[1, 1, 1, 1])
    g.channels[h] = 4
    return g.model([g.bn(h, name="bn")])


def statistics_fed_at_run_time():
    """Mean and variance are plain graph inputs without a stored default: not BN020's case."""
    g = GraphBuilder()
    x = g.input("x", [1, 3, 8, 8])
    h = g.conv(x, 4, name="conv")
    params = [
        g.param("s", np.ones(4)),
        g.param("b", np.zeros(4)),
        g.input("m", [4]),
        g.input("v", [4]),
    ]
    return g.model([g.bn(h, name="bn", params=params)])


POSITIVE = [
    Case(
        "resnet-small-keep-initializers-as-inputs",
        lambda: exported("resnet_small", keep_initializers_as_inputs=True),
        list(bn_scopes("resnet_small")),
        severity="warning",
        message="also graph input(s)",
    ),
    Case(
        "statistics-overridable",
        lambda: conv_bn(as_input=("mean", "var")),
        ["bn"],
        evidence={
            "parameters": {"mean": "bn.running_mean", "var": "bn.running_var"},
            "legacy_ir": False,
        },
    ),
    Case(
        "ir3-required-initializers-as-inputs",
        lambda: conv_bn(opset=8, ir_version=3, as_input=ALL_ROLES),
        ["bn"],
        severity="info",
        message="IR version 3 < 4 required every initializer to be a graph input",
        evidence={"ir_version": 3, "legacy_ir": True},
    ),
]
NEGATIVE = [
    Case("resnet-small-initializers-only", lambda: exported("resnet_small"), []),
    Case("initializers-only", lambda: conv_bn(), []),
    Case("only-the-conv-weight-is-an-input", conv_weight_is_input, []),
    Case("statistics-fed-at-run-time-without-default", statistics_fed_at_run_time, []),
    Case(
        "training-graph",
        lambda: conv_bn(as_input=ALL_ROLES),
        [],
        settings={"phase": "training"},
    ),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn020(case: Case) -> None:
    check_case("BN020", case)


def test_ir4_model_with_inputs_is_a_warning() -> None:
    case = Case(
        "ir4",
        lambda: conv_bn(opset=9, ir_version=4, as_input=ALL_ROLES),
        ["bn"],
        severity="warning",
    )
    check_case("BN020", case)
