"""BN003 batchnorm-training-mode-at-inference."""

from __future__ import annotations

import pytest

from tests.helpers import Case, check_case
from tests.rules.torch_cases import LIVE, dynamo_onnx, live, saved
from tests.zoo.onnx_builder import GraphBuilder


def conv_bn_relu(opset: int, training: bool, extra_outputs: int | None = None):
    def build():
        g = GraphBuilder(opset=opset)
        x = g.input("x", ["N", 3, 8, 8])
        y = g.relu(g.bn(g.conv(x, 4), name="bn", training=training, extra_outputs=extra_outputs))
        return g.model([y])

    return build


POSITIVE = [
    Case(
        "opset15-training-mode",
        conv_bn_relu(15, True),
        ["bn"],
        severity="error",
        evidence={"training_evidence": "training_mode=1"},
    ),
    Case("opset14-training-mode-one-output", conv_bn_relu(14, True, extra_outputs=0), ["bn"]),
    Case("opset9-five-outputs", conv_bn_relu(9, True), ["bn"], message="5 outputs"),
    Case("opset7-three-outputs", conv_bn_relu(7, True, extra_outputs=2), ["bn"]),
    Case("opset6-is-test-0", conv_bn_relu(6, True, extra_outputs=0), ["bn"], message="is_test=0"),
    # PyTorch: one BN left in train mode inside an eval model.
    Case(
        "module-mixed-modes",
        live(bn_train=True),
        ["bn"],
        settings=LIVE,
        severity="error",
        message="mixed modes",
    ),
    Case("pt2-exported-in-train-mode", saved("pt2", train=True), ["bn"], message="exported"),
    Case("torchscript-scripted-mixed-modes", saved("script", bn_train=True), ["bn"]),
    # Traced in train mode, then .eval() on the traced module: training=True stays baked in.
    Case(
        "torchscript-traced-then-eval",
        saved("trace", prepare=lambda traced: traced.eval(), train=True),
        ["bn"],
        message="baked",
    ),
    Case(
        "torchscript-traced-then-eval-trusted",
        saved("trace", prepare=lambda traced: traced.eval(), train=True),
        ["bn"],
        settings={"trust_model_code": True},
        message="baked",
    ),
    # The dynamo exporter gives a train-mode BN eval semantics and only says so in metadata.
    Case(
        "dynamo-onnx-from-train-mode",
        dynamo_onnx(train=True),
        ["bn"],
        severity="warning",
        evidence={"exported_in_training": True},
    ),
]
NEGATIVE = [
    Case("opset15-inference", conv_bn_relu(15, False), []),
    Case("opset9-single-output", conv_bn_relu(9, False), []),
    Case("opset6-is-test-1", conv_bn_relu(6, False), []),
    # Training-mode BN is expected in a training graph.
    Case("training-phase", conv_bn_relu(15, True), [], settings={"phase": "training"}),
    Case("module-eval", live(), [], settings=LIVE),
    Case("pt2-exported-in-eval", saved("pt2"), []),
    Case("dynamo-onnx-from-eval", dynamo_onnx(), []),
    # No running statistics: batch statistics whatever the mode, reported by BN004 instead.
    Case(
        "no-running-stats-is-bn004",
        live(bn_train=True, track_running_stats=False),
        [],
        settings=LIVE,
    ),
    # A train-mode model is expected to train: its default phase is training.
    Case("module-train-mode-default-phase", live(train=True), [], settings=LIVE),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn003(case: Case) -> None:
    check_case("BN003", case)
