"""``bnlint fold`` writes every exact fold and never a wrong one (issue 13, items 1, 2, 5-7).

Each model is built in code; "right" is judged independently of bnlint: ONNX Runtime, or
``onnx.reference`` where no runtime has the kernels, on the original and the written file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from tests import fold_cases as fc
from tests import fold_models as fm
from tests.helpers import save


def outputs(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    """Every graph output, by onnxruntime when it can run the model, else onnx.reference."""
    try:
        return fm.run(model, feeds)
    except Exception:
        return ReferenceEvaluator(model).run(None, feeds)


def feeds_for(model: onnx.ModelProto, **given) -> dict:
    feeds = fm.seeded_feeds(model)
    feeds.update(given)
    return {k: v for k, v in feeds.items() if k in {i.name for i in model.graph.input}}


def agree(original: onnx.ModelProto, folded: onnx.ModelProto, feeds: dict, rtol=2e-5) -> None:
    for a, b in zip(outputs(original, feeds), outputs(folded, feeds), strict=True):
        a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert a64.shape == b64.shape
        scale = max(float(np.abs(a64).max()), 1e-30)
        assert float(np.abs(a64 - b64).max()) <= rtol * scale, float(np.abs(a64 - b64).max())


def fold_cli(run_cli, tmp_path: Path, model: onnx.ModelProto, *args, exit_code: int = 0):
    source = save(model, tmp_path, "in.onnx")
    target = tmp_path / "out.onnx"
    result = run_cli(["fold", source, "-o", target, "--format", "json", *args], exit_code)
    findings = result.json["models"][0]["findings"] if result.json else []
    verification = result.json["models"][0].get("verification") if result.json else None
    written = onnx.load(str(target)) if target.exists() else None
    return written, findings, verification, result


def rows(verification: dict) -> dict[str, dict]:
    return {row["bn"]: row for row in verification["bns"]}


def all_ops(graph: onnx.GraphProto) -> list[str]:
    found = []
    for node in graph.node:
        found.append(node.op_type)
        for attribute in node.attribute:
            if attribute.HasField("g"):
                found += all_ops(attribute.g)
    return found


# -- item 1 ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_full_width_resnet50_folds_every_bn(tmp_path, run_cli) -> None:
    """Fan-in 2304 convolutions: float32 rounding, not a fold error, sets the differences."""
    from tests.zoo import fold_zoo

    model = fold_zoo.export(fold_zoo.FULL_RESNET50, seed=0)
    written, findings, verification, _ = fold_cli(run_cli, tmp_path, model)
    assert written is not None
    assert [r["verdict"] for r in verification["bns"]] == ["folded-correctly"] * 53
    assert not [f for f in findings if f["code"] == "BN012"]
    assert "BatchNormalization" not in fm.op_types(written)
    agree(model, written, fm.seeded_feeds(model, batch=1), rtol=1e-5)


# -- item 2 ------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("level", [[], ["--algebraic-only"]], ids=["both", "algebraic"])
def test_a_weight_that_is_also_a_graph_output_is_cloned(tmp_path, run_cli, dtype, level) -> None:
    model = fc.weight_also_output(dtype)
    written, _, verification, _ = fold_cli(run_cli, tmp_path, model, *level)
    assert rows(verification)["bn"]["verdict"] == "folded-correctly"
    agree(model, written, feeds_for(model), rtol=1e-12 if dtype == np.float64 else 2e-5)


def test_a_gemm_bias_read_elsewhere_is_cloned(tmp_path, run_cli) -> None:
    model = fc.gemm_bias_read_elsewhere()
    written, _, verification, _ = fold_cli(run_cli, tmp_path, model)
    assert rows(verification)["bn"]["verdict"] == "folded-correctly"
    agree(model, written, feeds_for(model))


@pytest.mark.parametrize(("length", "code"), [("K", "rank-unknown"), (3, "channel-mismatch")])
def test_a_matmul_whose_rank_is_known_only_at_run_time_is_refused(
    tmp_path, run_cli, length, code
) -> None:
    """A run-time Reshape before MatMul -> BN: folding assumes a 2-D BN input; with the
    rank unknown (or known to be 3, where axis 1 is not the features) it is refused."""
    model = fc.matmul_runtime_rank(length)
    written, _, verification, _ = fold_cli(run_cli, tmp_path, model, "--algebraic-only")
    row = rows(verification)["bn"]
    assert row["verdict"] == "not-folded" and row["reason_code"] == code
    feeds = {"x": np.random.default_rng(0).standard_normal((2, 36)).astype(np.float32)}
    feeds["shape"] = np.array([2, 6, 6], np.int64)  # a valid 3-D shape: axis 1 is not features
    agree(model, written, feeds, rtol=0)


def test_a_matmul_with_a_vector_weight_is_not_folded(tmp_path, run_cli) -> None:
    model = fc.matmul_vector_weight()
    written, _, verification, _ = fold_cli(run_cli, tmp_path, model, "--algebraic-only")
    assert rows(verification)["bn"]["verdict"] == "not-folded"
    agree(model, written, feeds_for(model), rtol=0)


# -- item 5 ------------------------------------------------------------------------------------
EXACT = {
    "conv-bn-bn": (fc.conv_bn_bn, {}),
    "bn-conv-bn": (fc.bn_conv_bn, {}),
    "same-k1-s1": (lambda: fc.bn_then_same_conv(1, 1), {}),
    "same-k2-s2-even": (lambda: fc.bn_then_same_conv(2, 2, 8), {}),
    "grouped-forward": (fc.bn_then_grouped_conv, {}),
    "if-body": (fc.bn_in_if, {"cond": np.array(True)}),
    "loop-body": (fc.bn_in_loop, {"M": np.array(2, np.int64)}),
    "matmul-transpose": (fc.matmul_transpose_bn, {}),
    "conv-add-bias": (fc.conv_add_bias_bn, {}),
}


@pytest.mark.parametrize("case", list(EXACT))
def test_exact_folds_are_made(tmp_path, run_cli, case) -> None:
    build, given = EXACT[case]
    model = build()
    written, findings, verification, _ = fold_cli(run_cli, tmp_path, model)
    assert {r["verdict"] for r in verification["bns"]} == {"folded-correctly"}, verification
    assert "BatchNormalization" not in all_ops(written.graph)
    assert not [f for f in findings if f["code"] == "BN012"]
    agree(model, written, feeds_for(model, **given))


def test_same_padding_that_pads_is_refused_with_the_true_reason(tmp_path, run_cli) -> None:
    model = fc.bn_then_same_conv(2, 2, 7)  # odd input: SAME_UPPER pads one column
    written, _, verification, _ = fold_cli(run_cli, tmp_path, model)
    row = rows(verification)["bn"]
    assert row["verdict"] == "not-folded" and "pads its input" in row["reason"]
    agree(model, written, feeds_for(model), rtol=0)


# -- item 6 ------------------------------------------------------------------------------------
TRAITS = fc.TRAITS


@pytest.mark.parametrize("case", list(TRAITS))
def test_real_model_traits_fold_without_false_refusal(tmp_path, run_cli, case) -> None:
    model = TRAITS[case]()
    written, findings, verification, _ = fold_cli(run_cli, tmp_path, model)
    assert rows(verification)["bn"]["verdict"] == "folded-correctly"
    assert not [f for f in findings if f["code"] == "BN012"]
    assert "BatchNormalization" not in fm.op_types(written)
    evidence = rows(verification)["bn"]
    assert evidence["algebraic"]["error"] <= evidence["algebraic"]["bound"]
    assert evidence["algebraic"]["margin"] >= 1


def test_a_fold_whose_error_beats_its_bound_reports_bound_error_and_margin(
    tmp_path, run_cli
) -> None:
    _, _, verification, _ = fold_cli(run_cli, tmp_path, fm.conv_bn())
    row = rows(verification)["bn"]
    for level in ("algebraic", "numeric"):
        assert set(row[level]) >= {"bound", "error", "margin", "criterion"}
        assert 0 <= row[level]["error"] <= row[level]["bound"]


def test_without_a_runtime_for_the_model_the_outputs_run_in_onnx_reference(
    tmp_path, run_cli
) -> None:
    """ONNX Runtime has no float64 Conv: the regions stand on the algebraic level, and the
    whole models are compared in onnx.reference on small probes."""
    _, _, verification, _ = fold_cli(run_cli, tmp_path, fc.plain_conv_bn(np.float64))
    assert rows(verification)["bn"]["verdict"] == "folded-correctly"
    assert verification["levels"]["outputs_by"] == "onnx.reference"
    assert verification["outputs"] and all(o["ok"] for o in verification["outputs"])
    assert verification["levels"]["numeric"] is False


# -- item 7 ------------------------------------------------------------------------------------
def test_a_correct_fold_is_not_a_finding_but_a_row_of_the_verification_section(
    tmp_path, run_cli
) -> None:
    source = save(fm.conv_bn(), tmp_path, "m.onnx")
    result = run_cli([source, "--verify", "--format", "json"], exit_code=None)
    model = result.json["models"][0]
    assert not [f for f in model["findings"] if f["code"] == "BN012"]
    assert rows(model["verification"])["bn"]["verdict"] == "folded-correctly"
    text = run_cli([source, "--verify"], exit_code=None).stdout
    assert "folded-correctly" in text


def test_fold_with_nothing_foldable_says_so(tmp_path, run_cli) -> None:
    source = save(fm.training_bn(), tmp_path, "m.onnx")
    result = run_cli(["fold", source, "-o", tmp_path / "out.onnx"], exit_code=0)
    assert "nothing was folded" in result.stderr
