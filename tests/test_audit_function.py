"""The audit judges function, not form (issue 13, items 3, 4 and 6).

Wrong folds are caught and the right BN named even when no runtime can run the model;
exact folds written in another form pass (or are ``unmatched`` with a reason, never wrong).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from tests import fold_cases as fc
from tests import fold_models as fm
from tests.helpers import save


def audit(run_cli, tmp_path: Path, original, folded, exit_code: int | None):
    source = save(original, tmp_path, "original.onnx")
    target = save(folded, tmp_path, "folded.onnx")
    result = run_cli(["verify", target, "--against", source, "--format", "json"], exit_code)
    model = result.json["models"][0]
    verdicts = {row["bn"]: row for row in (model.get("verification") or {}).get("bns", [])}
    return verdicts, model, result


# -- item 3: wrong folds the audit must catch --------------------------------------------------
def test_a_wrong_fold_inside_an_if_branch_is_caught(tmp_path, run_cli) -> None:
    original = fc.bn_in_if()
    verdicts, model, _ = audit(
        run_cli, tmp_path, original, fc.peer_in_then_branch(original, True), 1
    )
    assert verdicts["bn"]["verdict"] == "folded-wrongly"
    assert [f["node"] for f in model["findings"] if f["code"] == "BN012"] == ["bn"]


def test_a_correct_fold_inside_an_if_branch_passes(tmp_path, run_cli) -> None:
    original = fc.bn_in_if()
    verdicts, _, _ = audit(run_cli, tmp_path, original, fc.peer_in_then_branch(original, False), 0)
    assert verdicts["bn"]["verdict"] == "folded-correctly"


NO_RUNTIME = {
    "float64": lambda: fc.plain_conv_bn(np.float64),
    "bfloat16": fc.bfloat16_conv_bn,
    "opset6": fc.opset6_conv_bn,
}


@pytest.mark.parametrize("case", list(NO_RUNTIME))
def test_bn_applied_twice_is_caught_without_a_runtime(tmp_path, run_cli, case) -> None:
    original = NO_RUNTIME[case]()
    folded = fc.peer_bn_applied_twice(original)
    verdicts, model, _ = audit(run_cli, tmp_path, original, folded, 1)
    assert verdicts["bn"]["verdict"] == "folded-wrongly"
    (finding,) = [f for f in model["findings"] if f["code"] == "BN012"]
    assert finding["node"] == "bn" and "twice" in finding["message"]


@pytest.mark.parametrize("case", list(NO_RUNTIME))
def test_a_correct_fold_passes_without_a_runtime(tmp_path, run_cli, case) -> None:
    original = NO_RUNTIME[case]()
    verdicts, _, _ = audit(run_cli, tmp_path, original, fc.fold_into(original, "bn"), 0)
    assert verdicts["bn"]["verdict"] == "folded-correctly"


def test_a_shared_weight_scaled_in_place_is_caught_without_a_runtime(tmp_path, run_cli) -> None:
    original = fc.float64_to(fm.shared_weight(), onnx.TensorProto.DOUBLE)
    verdicts, model, _ = audit(run_cli, tmp_path, original, fc.peer_shared_in_place(original), 1)
    assert verdicts["bn_a"]["verdict"] == "folded-wrongly"
    (finding,) = [f for f in model["findings"] if f["code"] == "BN012"]
    assert finding["node"] == "bn_a" and "shared.weight" in finding["message"]


def test_float32_weights_in_a_float16_model_fail_the_audit(tmp_path, run_cli) -> None:
    original = fc.plain_conv_bn(np.float16)
    folded = fc.peer_float32_weights_in_float16(original)
    _, model, result = audit(run_cli, tmp_path, original, folded, None)
    assert result.exit_code != 0
    text = model.get("error") or " ".join(f["message"] for f in model["findings"])
    assert "onnx.checker" in text or "cannot load" in text


# -- item 4: exact folds in another form -----------------------------------------------------
EXACT_FORMS = {
    "mul-add": (fm.conv_bn, fc.peer_mul_add, {"bn"}),
    "depthwise-1x1": (fm.conv_bn, fc.peer_depthwise, {"bn"}),
    "forward-into-next-conv": (
        fc.conv_bn_conv,
        lambda m: fc.peer_forward(m, "bn", "conv2"),
        {"bn"},
    ),
    "conv-bn-bn-composed": (
        fc.conv_bn_bn,
        lambda m: fc.peer_compose(m, "bn1", "bn2"),
        {"bn1", "bn2"},
    ),
    "ir3-initializer-inputs": (
        fc.ir3_initializers_as_inputs,
        lambda m: fc.fold_into(m, "bn"),
        {"bn"},
    ),
    "bfloat16-arithmetic": (fc.bfloat16_conv_bn, fc.peer_bfloat16_arithmetic, {"bn"}),
    "float64-default-eps": (fc.float64_bn_without_eps, lambda m: fc.fold_into(m, "bn"), {"bn"}),
    "convtranspose-output-padding": (fc.conv_transpose_bn, fc.with_output_padding, {"bn"}),
}


@pytest.mark.parametrize("case", list(EXACT_FORMS))
def test_exact_folds_in_another_form_are_never_called_wrong(tmp_path, run_cli, case) -> None:
    build, peer, names = EXACT_FORMS[case]
    original = build()
    verdicts, model, _ = audit(run_cli, tmp_path, original, peer(original), 0)
    assert {verdicts[name]["verdict"] for name in names} <= {"folded-correctly", "unmatched"}
    assert not [f for f in model["findings"] if f["code"] == "BN012"]


def test_bn_conv_bn_both_folded_into_the_conv_passes(tmp_path, run_cli) -> None:
    original = fc.bn_conv_bn()
    once = fc.peer_forward(original, "bn1", "conv")
    verdicts, _, _ = audit(run_cli, tmp_path, original, fc.fold_into(once, "bn2"), 0)
    assert verdicts["bn1"]["verdict"] == "folded-correctly"
    assert verdicts["bn2"]["verdict"] == "folded-correctly"


# -- item 6 -----------------------------------------------------------------------------------
def test_a_renamed_bn_is_not_folded_rather_than_removed(tmp_path, run_cli) -> None:
    original = fm.conv_bn()
    verdicts, _, _ = audit(run_cli, tmp_path, original, fc.peer_rename_bn(original), 0)
    assert verdicts["bn"]["verdict"] == "not-folded"


TRAITS = fc.TRAITS


@pytest.mark.parametrize("case", list(TRAITS))
def test_peer_folds_of_real_model_traits_pass(tmp_path, run_cli, case) -> None:
    original = TRAITS[case]()
    folded = fc.fold_into(fc.inline_constants(original), "bn")
    verdicts, model, _ = audit(run_cli, tmp_path, original, folded, 0)
    assert verdicts["bn"]["verdict"] == "folded-correctly"
    assert not [f for f in model["findings"] if f["code"] == "BN012"]
