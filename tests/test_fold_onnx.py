"""bnlint's own ONNX fold: every producer kind, exact to float32 noise, nothing left behind."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from bnlint.api import lint
from bnlint.fold import fold_graph
from bnlint.loaders.onnx import build_graph
from tests import fold_models as fm

SETTINGS = SimpleNamespace()


def fold(model: onnx.ModelProto, **options):
    return fold_graph(build_graph(model, Path("model.onnx"), SETTINGS), **options)


PRODUCERS = {
    "conv1d": (lambda: fm.conv_bn(dims=1), "conv"),
    "conv2d": (fm.conv_bn, "conv"),
    "conv3d": (lambda: fm.conv_bn(dims=3, cin=2, cout=4), "conv"),
    "conv-without-bias": (lambda: fm.conv_bn(bias=False), "conv"),
    "conv-groups-2": (lambda: fm.conv_bn(groups=2), "conv"),
    "conv-depthwise": (lambda: fm.conv_bn(groups=4, cin=4, cout=4), "conv"),
    "conv-dilation-2": (lambda: fm.conv_bn(dilation=2), "conv"),
    "conv-no-padding": (lambda: fm.conv_bn(pads=0), "conv"),
    "conv-wide-padding": (lambda: fm.conv_bn(pads=3), "conv"),
    "conv-large-eps": (lambda: fm.conv_bn(eps=1e-1), "conv"),
    "conv-transpose": (lambda: fm.conv_transpose_bn(4, 8), "conv_transpose"),
    "conv-transpose-grouped": (
        lambda: fm.conv_transpose_bn(8, 4, groups=2),
        "conv_transpose",
    ),
    "conv-transpose-without-bias": (
        lambda: fm.conv_transpose_bn(6, 6, groups=3, bias=False),
        "conv_transpose",
    ),
    "gemm-transB": (lambda: fm.gemm_bn(trans_b=1), "gemm"),
    "gemm-no-transB": (lambda: fm.gemm_bn(trans_b=0), "gemm"),
    "gemm-alpha-beta": (lambda: fm.gemm_bn(alpha=0.5, beta=2.0), "gemm"),
    "gemm-without-bias": (lambda: fm.gemm_bn(bias=False, beta=3.0), "gemm"),
    "gemm-transA": (fm.gemm_trans_a_bn, "gemm"),
    "matmul-add": (lambda: fm.matmul_bn(with_add=True), "matmul_add"),
    "matmul": (lambda: fm.matmul_bn(with_add=False), "matmul"),
    "forward-into-unpadded-conv": (fm.bn_then_conv, "forward_conv"),
}


@pytest.mark.parametrize("name", list(PRODUCERS))
def test_every_producer_kind_folds_exactly(name: str) -> None:
    build, kind = PRODUCERS[name]
    model = build()
    original_bytes = model.SerializeToString()
    result = fold(model)
    (record,) = result.records
    assert (record.status, record.verdict.kind) == ("folded", kind)
    assert result.verification.ok, record.problem
    assert record.algebraic.ok and record.numeric.ok
    assert "BatchNormalization" not in fm.op_types(result.folded)
    onnx.checker.check_model(result.folded, full_check=True)
    assert fm.max_relative_error(model, result.folded) <= fm.CRITERION
    assert model.SerializeToString() == original_bytes, "the input model was modified"


def test_resnet_style_export_folds_every_bn_within_float32_noise() -> None:
    model = fm.zoo_onnx("resnet_small")
    assert fm.op_types(model).count("BatchNormalization") == 10
    result = fold(model)
    assert [r.status for r in result.records] == ["folded"] * 10
    assert result.verification.ok
    assert "BatchNormalization" not in fm.op_types(result.folded)
    assert fm.max_relative_error(model, result.folded) <= fm.CRITERION


def test_shared_weight_is_cloned_never_mutated() -> None:
    model = fm.shared_weight()
    shared = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy()
    result = fold(model)
    assert [r.status for r in result.records] == ["folded", "folded"]
    assert any("shared" in note for note in result.records[0].verdict.notes)
    weights = {n.name: n.input[1] for n in result.folded.graph.node if n.op_type == "Conv"}
    assert weights["conv_a"] != weights["conv_b"], "the two convs must get their own weights"
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(model.graph.initializer[0]), shared)
    assert fm.max_relative_error(model, result.folded) <= fm.CRITERION


def test_producer_with_other_consumers_is_not_folded_and_says_why() -> None:
    model = fm.two_consumers()
    result = fold(model)
    (record,) = result.records
    assert record.status == "not-folded"
    assert record.reason_code == "producer-shared-output"
    assert "also feeds 1 other node" in record.reason
    assert fm.op_types(result.folded).count("BatchNormalization") == 1
    assert fm.max_relative_error(model, result.folded) == 0.0


@pytest.mark.parametrize(
    ("role", "value", "folded"),
    [
        ("var", np.nan, False),  # NaN scale
        ("var", -1.0, False),  # sqrt of a negative variance + eps: NaN
        ("mean", np.inf, False),  # infinite shift
        ("scale", np.nan, False),
        ("var", np.inf, True),  # scale 0, shift beta: finite, the channel is a constant
    ],
)
def test_bn_with_non_finite_folded_terms_is_not_folded_and_says_why(
    role: str, value: float, folded: bool
) -> None:
    """A NaN or infinite scale or shift would be folded 'exactly' into NaN or infinite
    weights: the BN stays where BN006 names it."""
    model = fm.conv_bn()
    bn = next(n for n in model.graph.node if n.op_type == "BatchNormalization")
    name = bn.input[{"scale": 1, "mean": 3, "var": 4}[role]]
    tensor = next(t for t in model.graph.initializer if t.name == name)
    values = onnx.numpy_helper.to_array(tensor).copy()
    values[3] = value
    tensor.CopyFrom(onnx.numpy_helper.from_array(values, name))
    (record,) = fold(model).records
    assert "BN006" in [f.code for f in lint(model, select=["BN006"]).findings]
    if folded:
        assert record.status == "folded"
    else:
        assert (record.status, record.reason_code) == ("not-folded", "non-finite-statistics")
        assert "see BN006" in record.reason


@pytest.mark.parametrize("opset", [9, 15])
def test_training_mode_bn_is_never_folded_and_is_reported(opset: int) -> None:
    model = fm.training_bn(opset)
    result = fold(model)
    (record,) = result.records
    assert (record.status, record.reason_code) == ("not-folded", "training-mode")
    bns = [n for n in result.folded.graph.node if n.op_type == "BatchNormalization"]
    assert len(bns) == 1 and len(bns[0].output) == len(model.graph.node[1].output)
    codes = [f.code for f in lint(model, select=["BN003"]).findings]
    assert codes == ["BN003"]


def test_float16_model_folds_into_float16_weights() -> None:
    model = fm.conv_bn(dtype=np.float16)
    result = fold(model)
    assert result.verification.ok
    weight_name = result.folded.graph.node[0].input[1]
    (weight,) = [t for t in result.folded.graph.initializer if t.name == weight_name]
    assert weight.data_type == onnx.TensorProto.FLOAT16
    (record,) = result.records
    assert record.algebraic.ok and record.numeric.ok
    assert record.numeric.reference_error > 0  # the float16 original rounds too
    onnx.checker.check_model(result.folded, full_check=True)


def test_keep_leaves_matching_bns_in_place() -> None:
    result = fold(fm.shared_weight(), keep=["^bn_b$"])
    assert [(r.bn.name, r.status, r.reason_code) for r in result.records] == [
        ("bn_a", "folded", None),
        ("bn_b", "not-folded", "kept"),
    ]
    assert fm.op_types(result.folded).count("BatchNormalization") == 1


def test_linear_bn1d_mlp_export_folds_every_bn() -> None:
    model = fm.zoo_onnx("mlp_bn")  # bias-free nn.Linear exports as MatMul by a constant
    result = fold(model)
    assert [r.verdict.kind for r in result.records] == ["matmul", "matmul"]
    assert result.verification.ok
    assert "BatchNormalization" not in fm.op_types(result.folded)
    assert fm.max_relative_error(model, result.folded) <= fm.CRITERION


def test_dynamo_zero_bias_plumbing_is_dropped_after_folding(tmp_path: Path) -> None:
    """A bias-free Conv whose zero bias is built at run time (Shape -> Expand -> CastLike)."""
    from tests.zoo import onnx_zoo

    model = onnx.load(str(onnx_zoo.dynamo_zero_bias(tmp_path)))
    result = fold(model)
    assert result.verification.ok
    assert fm.op_types(result.folded) == ["Conv", "Relu"]
    assert fm.max_relative_error(model, result.folded) <= fm.CRITERION


def test_working_copy_without_writes_is_the_materialized_model() -> None:
    """Deferred weights come back byte for byte when the rewrite leaves them alone."""
    from bnlint.fold.working_copy import working_copy
    from bnlint.onnx.model_io import materialize

    model = fm.zoo_onnx("resnet_small")
    graph = build_graph(model, Path("model.onnx"), SETTINGS)
    every = {t.name for t in model.graph.initializer}
    copy = working_copy(model, graph, every)
    assert all(not t.raw_data for t in copy.model.graph.initializer if t.name in every)
    written = copy.model.graph.initializer[0].name
    copy.written(0)
    copy.fill()
    expected = materialize(model, graph)
    assert not copy.model.graph.initializer[0].raw_data, f"{written} was marked written"
    copy.model.graph.initializer[0].raw_data = expected.graph.initializer[0].raw_data
    assert copy.model.SerializeToString() == expected.SerializeToString()


def test_a_weight_read_elsewhere_keeps_its_data_when_the_fold_clones_it() -> None:
    """The plan defers the copy of every producer weight; a weight that is also a graph
    output is cloned, so its deferred original must be restored in the written model."""
    model = fm.shared_weight()
    name = model.graph.initializer[0].name
    model.graph.output.append(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
    )
    original = onnx.numpy_helper.to_array(model.graph.initializer[0]).copy()
    result = fold(model)
    assert result.verification.ok
    (kept,) = [t for t in result.folded.graph.initializer if t.name == name]
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(kept), original)
