"""``bnlint verify FOLDED --against ORIGINAL``: every real wrong-fold class is caught and named;
correct folds by onnxsim and onnxoptimizer pass."""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import pytest

from tests import fold_models as fm
from tests.helpers import save
from tests.zoo.onnx_builder import GraphBuilder


def audit_cli(
    run_cli, tmp_path: Path, original: onnx.ModelProto, folded: onnx.ModelProto, exit_code: int
) -> dict[str, dict]:
    """Run the audit in JSON; return each original BN's row of the verification section,
    with the BN012 finding about it (if any) under ``finding``."""
    source = save(original, tmp_path, "original.onnx")
    target = save(folded, tmp_path, "folded.onnx")
    result = run_cli(
        ["verify", target, "--against", source, "--format", "json"], exit_code=exit_code
    )
    model = result.json["models"][0]
    findings = {f["node"]: f for f in model["findings"] if f["code"] == "BN012"}
    rows = {row["bn"]: row for row in model["verification"]["bns"]}
    for name, row in rows.items():
        row["finding"] = findings.get(name)
    return rows


WRONG_FOLDS = {
    # bug class: (original model, hand_fold bug, BN named, evidence problem code, message part)
    "convtranspose-scaled-on-axis-0": (
        lambda: fm.conv_transpose_bn(4, 8),
        "axis0",
        "wrong-axis",
        "axis 0",
    ),
    "convtranspose-axis-0-square": (
        lambda: fm.conv_transpose_bn(6, 6),
        "axis0",
        "wrong-axis",
        "axis 0",
    ),
    "grouped-convtranspose": (
        lambda: fm.conv_transpose_bn(8, 4, groups=2),
        "groups",
        "groups-ignored",
        "group offset",
    ),
    "eps-ignored": (lambda: fm.conv_bn(eps=1e-3), "eps", "eps-ignored", "eps (0.001) was ignored"),
    "bias-not-scaled": (fm.conv_bn, "bias", "bias-not-scaled", "bias was not multiplied"),
    "gemm-beta-ignored": (
        lambda: fm.gemm_bn(beta=2.0),
        "beta",
        "gemm-beta-ignored",
        "beta=2 was ignored",
    ),
    "float16-downcast": (fm.conv_bn, "fp16", "float16-precision", "float16 downcast"),
    "training-mode-folded": (
        fm.training_bn,
        "training",
        "training-mode",
        "folded as if it were in inference mode",
    ),
}


@pytest.mark.parametrize("case", list(WRONG_FOLDS))
def test_wrong_fold_is_caught_and_the_right_bn_named(tmp_path, run_cli, case: str) -> None:
    """Two BNs, both folded; only ``bn`` has the bug, ``bn_lead`` before it is correct."""
    build, bug, problem, message = WRONG_FOLDS[case]
    original = fm.with_lead(build())
    folded = fm.hand_fold(original, bug, only="bn")
    rows = audit_cli(run_cli, tmp_path, original, folded, exit_code=1)
    assert rows["bn_lead"]["verdict"] == "folded-correctly"
    assert rows["bn_lead"]["finding"] is None, "a correct fold is no finding"
    row = rows["bn"]
    assert row["verdict"] == "folded-wrongly"
    assert row["problem_code"] == problem
    assert row["finding"]["severity"] == "error"
    assert message in row["finding"]["message"]


@pytest.mark.parametrize("case", list(WRONG_FOLDS))
def test_the_same_fold_without_the_bug_passes(tmp_path, run_cli, case: str) -> None:
    build, bug, _, _ = WRONG_FOLDS[case]
    original = fm.with_lead(build())
    rows = audit_cli(run_cli, tmp_path, original, fm.hand_fold(original), exit_code=0)
    assert rows["bn_lead"]["verdict"] == "folded-correctly"
    expected = "not-folded" if bug == "training" else "folded-correctly"
    assert rows["bn"]["verdict"] == expected
    assert rows["bn"]["finding"] is None


def only_the_second_bn_is_wrong() -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.input("x", ["N", 4, 6, 6])
    h = g.relu(g.bn(g.conv(x, 4, name="conv"), name="bn_conv"))
    h = g.bn(g.conv_transpose(h, 8, name="deconv"), name="bn_deconv")
    return fm.typed(g, [h])


def test_only_the_wrong_bn_is_blamed_in_a_chain(tmp_path, run_cli) -> None:
    original = only_the_second_bn_is_wrong()
    rows = audit_cli(run_cli, tmp_path, original, fm.hand_fold(original, "axis0"), 1)
    assert rows["bn_conv"]["verdict"] == "folded-correctly"
    assert rows["bn_deconv"]["verdict"] == "folded-wrongly"
    algebraic = rows["bn_deconv"]["algebraic"]
    assert algebraic["tensor"] == "bn_deconv_out"
    assert algebraic["error"] > 1e3 * algebraic["bound"]


def peer_zoo() -> onnx.ModelProto:
    """Conv, depthwise Conv, ConvTranspose, Gemm and a shared Conv output, each with a BN."""
    g = GraphBuilder()
    x = g.input("x", ["N", 4, 8, 8])
    h = g.relu(g.bn(g.conv(x, 8, name="conv"), name="bn_conv"))
    h = g.relu(g.bn(g.conv(h, 8, name="dw", groups=8), name="bn_dw"))
    h = g.relu(g.bn(g.conv_transpose(h, 4, name="deconv"), name="bn_deconv"))
    shared = g.conv(h, 4, name="shared")
    h = g.add(g.bn(shared, name="bn_shared"), shared, name="add")
    h = g.flatten(g.global_pool(h))
    return fm.typed(g, [g.bn(g.gemm(h, 6, name="fc"), name="bn_fc")])


def onnxsim_fold(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxsim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simplified, ok = onnxsim.simplify(model)
    assert ok
    return simplified


def onnxoptimizer_fold(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxoptimizer

    return onnxoptimizer.optimize(model, ["fuse_bn_into_conv"])


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        (onnxsim_fold, {"bn_conv", "bn_dw", "bn_deconv"}),
        (onnxoptimizer_fold, {"bn_conv", "bn_dw"}),  # runtime arithmetic, evaluated first
    ],
    ids=["onnxsim", "onnxoptimizer"],
)
def test_correct_peer_folds_pass(tmp_path, run_cli, tool, expected) -> None:
    original = peer_zoo()
    rows = audit_cli(run_cli, tmp_path, original, tool(original), exit_code=0)
    verdicts = {name: row["verdict"] for name, row in rows.items()}
    assert {name for name, v in verdicts.items() if v == "folded-correctly"} == expected
    assert set(verdicts) == {"bn_conv", "bn_dw", "bn_deconv", "bn_shared", "bn_fc"}
    assert rows["bn_shared"]["reason_code"] == "producer-shared-output"
    assert all(row["finding"] is None for row in rows.values())


def test_onnxsim_fold_of_a_torch_resnet_export_passes(tmp_path, run_cli) -> None:
    original = fm.zoo_onnx("resnet_small")
    rows = audit_cli(run_cli, tmp_path, original, onnxsim_fold(original), exit_code=0)
    assert len(rows) == 10
    assert {row["verdict"] for row in rows.values()} == {"folded-correctly"}


def test_fold_matched_by_structure_when_names_are_gone(tmp_path, run_cli) -> None:
    original = only_the_second_bn_is_wrong()
    folded = fm.hand_fold(original, "axis0")
    renames = {}
    for index, node in enumerate(folded.graph.node):
        node.name = ""
        for position, name in enumerate(node.output):
            if name not in {o.name for o in folded.graph.output}:
                renames[name] = node.output[position] = f"t{index}_{position}"
    for node in folded.graph.node:
        for position, name in enumerate(node.input):
            node.input[position] = renames.get(name, name)
    rows = audit_cli(run_cli, tmp_path, original, folded, exit_code=1)
    assert rows["bn_conv"]["matched_by"] == "structure"
    assert rows["bn_conv"]["verdict"] == "folded-correctly"
    assert rows["bn_deconv"]["problem_code"] == "wrong-axis"


def test_a_fold_that_deleted_the_producer_is_wrong_by_its_numbers(tmp_path, run_cli) -> None:
    """A 'fold' that deleted the BN and its producer: the region computes something else."""
    original = fm.conv_bn()
    folded = onnx.ModelProto()
    folded.CopyFrom(original)
    conv, _bn, relu = folded.graph.node
    relu.input[0] = conv.input[0] + "_pooled"
    pool = onnx.helper.make_node(
        "AveragePool", [conv.input[0]], [relu.input[0]], kernel_shape=[1, 1]
    )
    del folded.graph.node[:]
    folded.graph.node.extend([pool, relu])
    rows = audit_cli(run_cli, tmp_path, original, folded, exit_code=1)
    assert rows["bn"]["verdict"] == "folded-wrongly"
    assert rows["bn"]["finding"]["severity"] == "error"


def test_audit_rejects_unreadable_input(tmp_path, run_cli) -> None:
    source = save(fm.conv_bn(), tmp_path, "original.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a model")
    result = run_cli(["verify", bad, "--against", source], exit_code=2)
    assert "bad.onnx" in result.stderr
    run_cli(["verify", source, source, "--against", source], exit_code=2)


@pytest.mark.parametrize(
    "build",
    [
        lambda: fm.matmul_bn(with_add=False),
        lambda: fm.matmul_bn(with_add=True),
        fm.bn_then_conv,
        lambda: fm.gemm_bn(trans_b=0, alpha=0.5, beta=2.0),
        fm.shared_weight,
    ],
    ids=["matmul", "matmul-add", "forward-conv", "gemm-alpha-beta", "shared-weight"],
)
def test_bnlint_folds_pass_the_audit(tmp_path, run_cli, build) -> None:
    original = build()
    source = save(original, tmp_path, "original.onnx")
    run_cli(["fold", source, "-o", tmp_path / "folded.onnx"])
    result = run_cli(
        ["verify", tmp_path / "folded.onnx", "--against", source, "--format", "json"], 0
    )
    verdicts = [row["verdict"] for row in result.json["models"][0]["verification"]["bns"]]
    assert verdicts and set(verdicts) == {"folded-correctly"}
    assert not result.json["models"][0]["findings"]


def test_peer_arithmetic_on_a_weight_larger_than_loader_plumbing_is_evaluated(
    tmp_path, run_cli
) -> None:
    """onnxoptimizer leaves `W * (gamma / sqrt(var + eps))` as runtime ops; on a big weight."""
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 640, 2, 2])
    original = g.model([g.relu(g.bn(g.conv(x, 640, k=1, name="big"), name="bn_big"))])
    weight = next(t for t in original.graph.initializer if t.name == "big.weight")
    assert len(weight.raw_data) > 1 << 20, "larger than the loader's plumbing limit"
    source = save(original, tmp_path, "original.onnx")
    target = save(onnxoptimizer_fold(original), tmp_path, "folded.onnx")
    result = run_cli(["verify", target, "--against", source, "--format", "json"], exit_code=0)
    model = result.json["models"][0]
    (row,) = model["verification"]["bns"]
    assert row["verdict"] == "folded-correctly"
    assert model["findings"] == [], [f["message"] for f in model["findings"]]
    assert model["verification"]["levels"]["numeric"] is True


def test_the_audit_summary_says_what_it_checked(tmp_path: Path, run_cli) -> None:
    """Not "1 model, no BatchNorm, 0 rules": the folded model has no BN left, but the audit
    judged the original's BatchNorms against BN012."""
    source = save(fm.conv_bn(), tmp_path, "original.onnx")
    run_cli(["fold", source, "-o", tmp_path / "folded.onnx"])
    result = run_cli(["verify", tmp_path / "folded.onnx", "--against", source], 0)
    assert "All checks passed: 1 model, 1 BatchNorm, 1 rule." in result.stdout + result.stderr
    summary = run_cli(
        ["verify", tmp_path / "folded.onnx", "--against", source, "--format", "json"], 0
    ).json["summary"]
    assert (summary["batchnorms"], summary["rules_run"]) == (1, ["BN012"])
