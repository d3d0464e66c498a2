"""BN018 batch-dependent-output: a sample alone and inside a batch must give the same output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests import fold_models as fm
from tests.helpers import Case, check_case, rule_findings
from tests.zoo.onnx_builder import GraphBuilder

VERIFY = {"verify": True}


def training_bn(opset: int, batch: int | str = "N"):
    def build():
        g = GraphBuilder(opset=opset)
        x = g.input("x", [batch, 3, 6, 6])
        h = g.relu(g.bn(g.conv(x, 4, name="conv"), name="bn", training=True))
        return fm.typed(g, [g.relu(g.bn(g.conv(h, 4, name="conv2"), name="bn2"))])

    return build


def batch_statistics_as_inputs():
    """An inference-mode BN whose mean and variance are computed from the batch itself."""
    g = GraphBuilder(opset=13)
    x = g.input("x", ["N", 4, 6, 6])
    (mean,) = g.node("ReduceMean", [x], name="mean", axes=[0, 2, 3], keepdims=0)
    (centered,) = g.node(
        "Sub",
        [
            x,
            g.node(
                "Reshape",
                [mean, g.param("shape", np.array([1, 4, 1, 1], dtype=np.int64))],
                name="reshape",
            )[0],
        ],
        name="center",
    )
    (square,) = g.node("Mul", [centered, centered], name="square")
    (var,) = g.node("ReduceMean", [square], name="var", axes=[0, 2, 3], keepdims=0)
    params = [g.param("bn.weight", np.ones(4)), g.param("bn.bias", np.zeros(4)), mean, var]
    return fm.typed(g, [g.bn(x, name="bn", c=4, params=params)])


def no_bn_but_batch_mean():
    g = GraphBuilder(opset=13)
    x = g.input("x", ["N", 4])
    (mean,) = g.node("ReduceMean", [x], name="batch_mean", axes=[0], keepdims=1)
    (out,) = g.node("Sub", [x, mean], name="sub")
    return fm.typed(g, [out])


def torch_bn_without_running_stats():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))
    return model.eval()


def torch_mixed_modes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BatchNorm2d(4))
    model.eval()
    model[3].train()  # e.g. a freeze helper that re-enabled one layer
    return model


POSITIVE = [
    Case(
        "opset15-training-mode",
        training_bn(15),
        ["bn"],
        settings=VERIFY,
        severity="error",
        evidence={"located_by": "probe", "sample": 0, "batch_size": 4},
    ),
    Case("opset9-five-outputs", training_bn(9), ["bn"], settings=VERIFY),
    Case(
        "fixed-batch-two-companion-sets",
        training_bn(15, batch=3),
        ["bn"],
        settings=VERIFY,
        evidence={"batch_size": 3},
    ),
    Case("batch-statistics-fed-as-inputs", batch_statistics_as_inputs, ["bn"], settings=VERIFY),
    Case(
        "coupling-without-a-bn",
        no_bn_but_batch_mean,
        ["<model>"],
        settings=VERIFY,
        message="no BatchNorm could be identified",
    ),
    Case(
        "torch-bn-without-running-stats",
        torch_bn_without_running_stats,
        ["1"],
        settings={**VERIFY, "example_inputs": (torch.randn(2, 3, 6, 6),)},
        evidence={"located_by": "mode"},
    ),
    Case(
        "torch-one-bn-back-in-train-mode",
        torch_mixed_modes,
        ["3"],
        settings={**VERIFY, "example_inputs": (torch.randn(2, 3, 6, 6),)},
        evidence={"located_by": "mode"},
    ),
]
NEGATIVE = [
    Case("eval-mode", fm.conv_bn, [], settings=VERIFY),
    Case("training-mode-without-verify", training_bn(15), []),
    Case("batch-fixed-at-one", training_bn(15, batch=1), [], settings=VERIFY),
    Case(
        "torch-eval-bn",
        lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval(),
        [],
        settings={**VERIFY, "example_inputs": (torch.randn(2, 3, 6, 6),)},
    ),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn018(case: Case) -> None:
    check_case("BN018", case)


def test_only_the_first_coupling_bn_is_blamed() -> None:
    (finding,) = rule_findings("BN018", POSITIVE[0])
    assert finding.evidence["max_rel_error"] > finding.evidence["tolerance"] == 1e-4
    assert "input agrees" in finding.message
