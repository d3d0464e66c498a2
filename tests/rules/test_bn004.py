"""BN004 batch-statistics-at-eval."""

from __future__ import annotations

import pytest
from torch import nn

from tests.helpers import Case, check_case
from tests.rules.torch_cases import LIVE, live, model, saved


def _running_stats_removed() -> nn.Module:
    built = model()
    built.bn.running_mean = None
    built.bn.running_var = None
    return built


POSITIVE = [
    Case(
        "module-track-running-stats-false",
        live(track_running_stats=False),
        ["bn"],
        settings=LIVE,
        severity="error",
        message="track_running_stats=False",
        evidence={"track_running_stats": False, "module_training": False},
    ),
    Case(
        "module-running-stats-set-to-none",
        _running_stats_removed,
        ["bn"],
        settings=LIVE,
        message="running_mean and running_var missing",
    ),
    Case("pt2", saved("pt2", track_running_stats=False), ["bn"]),
    Case("torchscript-scripted-static", saved("script", track_running_stats=False), ["bn"]),
    Case("torchscript-traced-static", saved("trace", track_running_stats=False), ["bn"]),
    # Mode does not matter: without running statistics eval() changes nothing.
    Case(
        "module-train-mode", live(track_running_stats=False, bn_train=True), ["bn"], settings=LIVE
    ),
]
NEGATIVE = [
    Case("module-with-running-stats", live(), [], settings=LIVE),
    Case("pt2-with-running-stats", saved("pt2"), []),
    # InstanceNorm has no running statistics by default and needs none: per-sample by design.
    Case("instance-norm", live(norm=nn.InstanceNorm2d), [], settings=LIVE),
    # A train-mode BN with running statistics is BN003's finding, not this rule's.
    Case("train-mode-with-stats", live(bn_train=True), [], settings=LIVE),
    Case(
        "training-phase",
        live(track_running_stats=False),
        [],
        settings={**LIVE, "phase": "training"},
    ),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn004(case: Case) -> None:
    check_case("BN004", case)
