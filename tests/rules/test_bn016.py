"""BN016 frozen-affine-updating-stats."""

from __future__ import annotations

import pytest

from tests.helpers import Case, check_case
from tests.rules.torch_cases import LIVE, live, saved

FINETUNE = {"phase": "finetune"}
FROZEN = {"train": True, "freeze_affine": (True, True)}

POSITIVE = [
    Case(
        "module-frozen-gamma-beta-in-train-mode",
        live(**FROZEN),
        ["bn"],
        settings={**LIVE, **FINETUNE},
        severity="warning",
        evidence={"affine_requires_grad": [False, False], "training": True},
    ),
    # .pt2 and TorchScript archives carry requires_grad and the training flag as well.
    Case("pt2-exported-in-train-mode", saved("pt2", **FROZEN), ["bn"], settings=FINETUNE),
    Case("torchscript-scripted-static", saved("script", **FROZEN), ["bn"], settings=FINETUNE),
]
NEGATIVE = [
    Case("trainable-affine", live(train=True), [], settings={**LIVE, **FINETUNE}),
    Case(
        "only-gamma-frozen",
        live(train=True, freeze_affine=(True, False)),
        [],
        settings={**LIVE, **FINETUNE},
    ),
    # Frozen and in eval mode: the statistics are frozen too (the fix).
    Case(
        "frozen-bn-in-eval-mode",
        live(**FROZEN, bn_train=False),
        [],
        settings={**LIVE, **FINETUNE},
    ),
    Case("momentum-zero", live(**FROZEN, momentum=0.0), [], settings={**LIVE, **FINETUNE}),
    # The rule is about fine-tuning; plain training (the default phase here) does not run it.
    Case("training-phase", live(**FROZEN), [], settings=LIVE),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn016(case: Case) -> None:
    check_case("BN016", case)
