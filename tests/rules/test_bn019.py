"""BN019 syncbatchnorm-at-inference."""

from __future__ import annotations

import pytest
from torch import nn

from tests.helpers import Case, check_case
from tests.rules.torch_cases import LIVE, live, saved

SYNC = {"norm": nn.SyncBatchNorm}

POSITIVE = [
    Case(
        "module",
        live(**SYNC),
        ["bn"],
        settings=LIVE,
        severity="warning",
        evidence={"module_class": "torch.nn.modules.batchnorm.SyncBatchNorm"},
    ),
    Case("pt2", saved("pt2", **SYNC), ["bn"]),
    # torch.jit.script rejects SyncBatchNorm; tracing works and keeps the class name.
    Case("torchscript-traced-static", saved("trace", **SYNC), ["bn"]),
]
NEGATIVE = [
    Case("batchnorm2d", live(), [], settings=LIVE),
    Case("training-phase", live(**SYNC), [], settings={**LIVE, "phase": "training"}),
    # Exported ONNX no longer says which class a BN came from (a documented limit).
    Case("onnx-export", saved("onnx", **SYNC), []),
]


@pytest.mark.parametrize("case", POSITIVE + NEGATIVE, ids=lambda case: case.id)
def test_bn019(case: Case) -> None:
    check_case("BN019", case)
