"""Tests for bnlint.analysis.reference, the NumPy ground truth for BatchNormalization.

Checked against the official ONNX backend conformance data (vendored under
tests/data/onnx_backend), onnx's ReferenceEvaluator, and torch.nn.functional.batch_norm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from bnlint.analysis.reference import (
    TrainingResult,
    batch_norm_inference,
    batch_norm_training,
    fold_scale,
    folded_bias,
)

DATA_DIR = Path(__file__).resolve().parent / "data" / "onnx_backend"
ONNX_CASES = sorted(p.name for p in DATA_DIR.glob("test_batchnorm_*") if p.is_dir())
SHAPES = [(8, 4), (4, 3, 7), (2, 3, 5, 6), (2, 3, 4, 3, 5)]  # ranks 2, 3, 4, 5


def _read_tensor(path: Path) -> np.ndarray:
    tensor = onnx.TensorProto()
    tensor.ParseFromString(path.read_bytes())
    return numpy_helper.to_array(tensor)


def _bn_attributes(model: onnx.ModelProto) -> dict[str, float | int]:
    """epsilon/momentum/training_mode of the model's BatchNormalization node, with defaults
    taken from the ONNX schema of the model's opset."""
    (node,) = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    schema = onnx.defs.get_schema("BatchNormalization", opset, "")
    attrs = {
        name: helper.get_attribute_value(schema.attributes[name].default_value)
        for name in ("epsilon", "momentum", "training_mode")
    }
    attrs.update({a.name: helper.get_attribute_value(a) for a in node.attribute})
    return attrs


def _random_params(rng: np.random.Generator, c: int) -> tuple[np.ndarray, ...]:
    scale = rng.standard_normal(c)
    bias = rng.standard_normal(c)
    mean = rng.standard_normal(c)
    var = rng.uniform(0.2, 2.0, c)
    return scale, bias, mean, var


# --------------------------------------------------------------------------------------------
# ONNX backend conformance data
# --------------------------------------------------------------------------------------------


def test_onnx_cases_are_vendored() -> None:
    # Guards against the parametrized test below silently collecting nothing.
    assert set(ONNX_CASES) == {
        "test_batchnorm_epsilon",
        "test_batchnorm_epsilon_training_mode",
        "test_batchnorm_example",
        "test_batchnorm_example_training_mode",
    }
    assert (DATA_DIR / "LICENSE").is_file()


@pytest.mark.parametrize("case", ONNX_CASES)
def test_onnx_backend_case(case: str) -> None:
    case_dir = DATA_DIR / case
    model = onnx.load(case_dir / "model.onnx")
    data_dir = case_dir / "test_data_set_0"
    inputs = [_read_tensor(data_dir / f"input_{i}.pb") for i in range(len(model.graph.input))]
    expected = [_read_tensor(data_dir / f"output_{i}.pb") for i in range(len(model.graph.output))]
    x, scale, bias, mean, var = inputs
    attrs = _bn_attributes(model)
    assert attrs["training_mode"] == int(case.endswith("_training_mode"))
    assert attrs["epsilon"] == pytest.approx(1e-2 if "epsilon" in case else 1e-5)

    if not attrs["training_mode"]:
        (y_expected,) = expected
        y = batch_norm_inference(x, scale, bias, mean, var, eps=attrs["epsilon"])
        assert y.dtype == y_expected.dtype == np.float32
        np.testing.assert_allclose(y, y_expected, rtol=1e-5, atol=1e-6)
        return

    # ONNX momentum weighs the OLD running value; ours weighs the new batch statistic.
    assert attrs["momentum"] == pytest.approx(0.9)
    y_expected, mean_expected, var_expected = expected
    kwargs = {"eps": attrs["epsilon"], "momentum": 1.0 - attrs["momentum"]}
    res = batch_norm_training(x, scale, bias, mean, var, unbiased_running_var=False, **kwargs)
    assert res.y.dtype == res.running_mean.dtype == res.running_var.dtype == np.float32
    np.testing.assert_allclose(res.y, y_expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(res.running_mean, mean_expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(res.running_var, var_expected, rtol=1e-6, atol=1e-7)

    # The tolerances above are tight enough to tell the conventions apart: PyTorch's
    # unbiased running variance, or ONNX's momentum passed through unconverted, must fail.
    torch_style = batch_norm_training(x, scale, bias, mean, var, **kwargs)
    assert not np.allclose(torch_style.running_var, var_expected, rtol=1e-6, atol=1e-7)
    unconverted = batch_norm_training(
        x, scale, bias, mean, var, eps=attrs["epsilon"], momentum=attrs["momentum"]
    )
    assert not np.allclose(unconverted.running_mean, mean_expected, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"rank{len(s)}")
@pytest.mark.parametrize("training_mode", [0, 1])
def test_matches_onnx_reference_evaluator(shape: tuple[int, ...], training_mode: int) -> None:
    """Non-default momentum/epsilon and ranks other than 4, against onnx.reference."""
    from onnx.reference import ReferenceEvaluator

    rng = np.random.default_rng(1234 + len(shape))
    x = rng.standard_normal(shape) * 3.0 + 1.5
    scale, bias, mean, var = _random_params(rng, shape[1])
    onnx_momentum, eps = 0.7, 1e-3
    outputs = ["y", "out_mean", "out_var"] if training_mode else ["y"]
    node = helper.make_node(
        "BatchNormalization",
        ["x", "s", "b", "m", "v"],
        outputs,
        epsilon=eps,
        momentum=onnx_momentum,
        training_mode=training_mode,
    )
    dbl = onnx.TensorProto.DOUBLE
    graph = helper.make_graph(
        [node],
        "bn",
        [helper.make_tensor_value_info(n, dbl, None) for n in ["x", "s", "b", "m", "v"]],
        [helper.make_tensor_value_info(n, dbl, None) for n in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    # ONNX stores float attributes as float32: use the rounded values, not 0.7 / 1e-3.
    attrs = _bn_attributes(model)
    onnx_momentum, eps = attrs["momentum"], attrs["epsilon"]
    assert eps != 1e-3
    feeds = {"x": x, "s": scale, "b": bias, "m": mean, "v": var}
    got = ReferenceEvaluator(model).run(None, feeds)

    if training_mode:
        res = batch_norm_training(
            x, scale, bias, mean, var, eps, 1 - onnx_momentum, unbiased_running_var=False
        )
        ours = [res.y, res.running_mean, res.running_var]
    else:
        ours = [batch_norm_inference(x, scale, bias, mean, var, eps)]
    for a, b in zip(ours, got, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------------
# PyTorch
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"rank{len(s)}")
def test_matches_torch_inference(shape: tuple[int, ...]) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(len(shape))
    x = rng.standard_normal(shape) * 2.0 - 0.5
    scale, bias, mean, var = _random_params(rng, shape[1])
    t = torch.from_numpy
    expected = torch.nn.functional.batch_norm(
        t(x), t(mean), t(var), t(scale), t(bias), training=False, eps=1e-3
    ).numpy()
    y = batch_norm_inference(x, scale, bias, mean, var, eps=1e-3)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)

    # float32 in, float32 out.
    x32 = x.astype(np.float32)
    y32 = batch_norm_inference(x32, scale, bias, mean, var, eps=1e-3)
    assert y32.dtype == np.float32
    expected32 = torch.nn.functional.batch_norm(
        t(x32), *(t(p.astype(np.float32)) for p in (mean, var, scale, bias)), eps=1e-3
    ).numpy()
    np.testing.assert_allclose(y32, expected32, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"rank{len(s)}")
@pytest.mark.parametrize("momentum", [0.1, 0.35])
def test_matches_torch_training(shape: tuple[int, ...], momentum: float) -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(100 + len(shape))
    x = rng.standard_normal(shape) * 1.7 + 0.3
    scale, bias, mean, var = _random_params(rng, shape[1])
    t = torch.from_numpy
    running_mean, running_var = t(mean.copy()), t(var.copy())  # updated in place by torch
    expected = torch.nn.functional.batch_norm(
        t(x), running_mean, running_var, t(scale), t(bias), True, momentum, 1e-4
    ).numpy()

    res = batch_norm_training(x, scale, bias, mean, var, eps=1e-4, momentum=momentum)
    assert isinstance(res, TrainingResult)
    np.testing.assert_allclose(res.y, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(res.running_mean, running_mean.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(res.running_var, running_var.numpy(), rtol=1e-12, atol=1e-12)
    # Inputs are not modified (unlike torch's in-place buffers).
    assert not np.allclose(mean, res.running_mean)

    # Batch statistics: biased variance for normalisation.
    reduce_axes = tuple(i for i in range(x.ndim) if i != 1)
    np.testing.assert_allclose(res.batch_mean, x.mean(axis=reduce_axes), rtol=1e-12)
    np.testing.assert_allclose(res.batch_var, x.var(axis=reduce_axes), rtol=1e-12)
    # ONNX semantics (biased running var) would not match torch's running_var.
    onnx_style = batch_norm_training(
        x, scale, bias, mean, var, eps=1e-4, momentum=momentum, unbiased_running_var=False
    )
    np.testing.assert_allclose(onnx_style.y, expected, rtol=1e-10, atol=1e-10)
    assert not np.allclose(onnx_style.running_var, running_var.numpy(), rtol=1e-9, atol=0)


def test_matches_torch_batchnorm_module_float32() -> None:
    """nn.BatchNorm2d with float32 data, two training steps, then eval."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    c = 5
    bn = torch.nn.BatchNorm2d(c, eps=1e-5, momentum=0.2)
    scale, bias, _, _ = _random_params(rng, c)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(scale))
        bn.bias.copy_(torch.from_numpy(bias))
    running_mean = np.zeros(c, dtype=np.float32)
    running_var = np.ones(c, dtype=np.float32)
    bn.train()
    for _ in range(2):
        x = (rng.standard_normal((3, c, 4, 4)) * 2 + 1).astype(np.float32)
        with torch.no_grad():
            expected = bn(torch.from_numpy(x)).numpy()
        res = batch_norm_training(x, scale, bias, running_mean, running_var, 1e-5, 0.2)
        running_mean, running_var = res.running_mean, res.running_var
        assert res.y.dtype == running_mean.dtype == running_var.dtype == np.float32
        np.testing.assert_allclose(res.y, expected, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(running_mean, bn.running_mean.numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(running_var, bn.running_var.numpy(), rtol=1e-6, atol=1e-6)
    bn.eval()
    x = rng.standard_normal((2, c, 3, 3)).astype(np.float32)
    with torch.no_grad():
        expected = bn(torch.from_numpy(x)).numpy()
    y = batch_norm_inference(x, scale, bias, running_mean, running_var, 1e-5)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Layout, hand-computed values, folding
# --------------------------------------------------------------------------------------------


def test_hand_computed_values() -> None:
    x = np.array([[1.0, 10.0], [3.0, 30.0]])  # N=2, C=2
    y = batch_norm_inference(x, [2.0, 1.0], [0.5, 0.0], [1.0, 20.0], [3.0, 100.0], eps=1.0)
    # channel 0: (x - 1) / 2 * 2 + 0.5; channel 1: (x - 20) / sqrt(101)
    expected = np.array([[0.5, -10 / np.sqrt(101)], [2.5, 10 / np.sqrt(101)]])
    np.testing.assert_allclose(y, expected, rtol=1e-15)

    res = batch_norm_training(x, [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0], 0.0, 0.25)
    np.testing.assert_allclose(res.y, [[-1.0, -1.0], [1.0, 1.0]], rtol=1e-15)
    np.testing.assert_allclose(res.batch_mean, [2.0, 20.0])
    np.testing.assert_allclose(res.batch_var, [1.0, 100.0])  # biased: /n
    np.testing.assert_allclose(res.running_mean, [0.5, 5.0])  # 0.75 * 0 + 0.25 * mean
    np.testing.assert_allclose(res.running_var, [0.75 + 0.5, 0.75 + 50.0])  # unbiased: /(n-1)
    res = batch_norm_training(
        x, [1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0], 0.0, 0.25, unbiased_running_var=False
    )
    np.testing.assert_allclose(res.running_var, [0.75 + 0.25, 0.75 + 25.0])


def test_result_is_frozen() -> None:
    res = batch_norm_training(np.ones((2, 1)), [1.0], [0.0], [0.0], [1.0])
    with pytest.raises(AttributeError):
        res.y = np.zeros(1)  # type: ignore[misc]


@pytest.mark.parametrize("training", [False, True])
def test_channels_last_axis(training: bool) -> None:
    rng = np.random.default_rng(42)
    n, length, c = 3, 7, 4
    x_nlc = rng.standard_normal((n, length, c))
    scale, bias, mean, var = _random_params(rng, c)
    x_ncl = x_nlc.transpose(0, 2, 1)
    if training:
        last = batch_norm_training(x_nlc, scale, bias, mean, var, axis=-1)
        first = batch_norm_training(x_ncl, scale, bias, mean, var, axis=1)
        np.testing.assert_allclose(last.running_mean, first.running_mean, rtol=1e-14)
        np.testing.assert_allclose(last.running_var, first.running_var, rtol=1e-14)
        y_last, y_first = last.y, first.y
    else:
        y_last = batch_norm_inference(x_nlc, scale, bias, mean, var, axis=-1)
        y_first = batch_norm_inference(x_ncl, scale, bias, mean, var, axis=1)
    assert y_last.shape == (n, length, c)
    np.testing.assert_allclose(y_last, y_first.transpose(0, 2, 1), rtol=1e-14, atol=1e-14)
    # axis=2 is the same as axis=-1 here; axis=1 on (N, L, C) with L != C is a shape error.
    np.testing.assert_array_equal(
        y_last,
        batch_norm_training(x_nlc, scale, bias, mean, var, axis=2).y
        if training
        else batch_norm_inference(x_nlc, scale, bias, mean, var, axis=2),
    )
    with pytest.raises(ValueError, match="must have shape"):
        batch_norm_inference(x_nlc, scale, bias, mean, var, axis=1)


@pytest.mark.parametrize("with_producer_bias", [False, True])
def test_fold_into_1x1_conv(with_producer_bias: bool) -> None:
    rng = np.random.default_rng(2024)
    n, c_in, c_out, h, w = 2, 3, 5, 4, 6
    x = rng.standard_normal((n, c_in, h, w))
    weight = rng.standard_normal((c_out, c_in))  # 1x1 conv kernel, spatial dims squeezed
    conv_bias = rng.standard_normal(c_out) if with_producer_bias else None
    scale, bias, mean, var = _random_params(rng, c_out)
    eps = 1e-3

    def conv1x1(w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        out = np.einsum("oi,nihw->nohw", w, x)
        return out if b is None else out + b[None, :, None, None]

    expected = batch_norm_inference(conv1x1(weight, conv_bias), scale, bias, mean, var, eps)
    mult = fold_scale(scale, var, eps)
    assert mult.dtype == np.float64
    new_bias = folded_bias(scale, bias, mean, var, eps, producer_bias=conv_bias)
    assert new_bias.dtype == np.float64
    folded = conv1x1(weight * mult[:, None], new_bias)
    np.testing.assert_allclose(folded, expected, rtol=1e-12, atol=1e-12)


def test_fold_hand_computed() -> None:
    np.testing.assert_allclose(fold_scale([2.0, -3.0], [3.0, 8.0], 1.0), [1.0, -1.0])
    # beta + (b - mean) * mult
    np.testing.assert_allclose(
        folded_bias([2.0, -3.0], [1.0, 0.5], [5.0, 2.0], [3.0, 8.0], 1.0, [7.0, 0.0]),
        [1.0 + 2.0, 0.5 + 2.0],
    )
    np.testing.assert_allclose(
        folded_bias([2.0, -3.0], [1.0, 0.5], [5.0, 2.0], [3.0, 8.0], 1.0), [1.0 - 5.0, 0.5 + 2.0]
    )


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

_X = np.zeros((2, 3, 4))
_P3 = np.ones(3)
_P2 = np.ones(2)


@pytest.mark.parametrize("bad", ["scale", "bias", "mean", "var"])
def test_parameter_length_mismatch(bad: str) -> None:
    params = {"scale": _P3, "bias": _P3, "mean": _P3, "var": _P3, bad: _P2}
    with pytest.raises(ValueError, match=rf"{bad} must have shape \(3,\).*got \(2,\)"):
        batch_norm_inference(_X, **params)


@pytest.mark.parametrize("bad", ["scale", "bias", "running_mean", "running_var"])
def test_training_parameter_length_mismatch(bad: str) -> None:
    params = {"scale": _P3, "bias": _P3, "running_mean": _P3, "running_var": _P3, bad: _P2}
    with pytest.raises(ValueError, match=rf"{bad} must have shape \(3,\)"):
        batch_norm_training(_X, **params)


def test_invalid_inputs() -> None:
    with pytest.raises(ValueError, match="rank >= 2"):
        batch_norm_inference(np.zeros(3), _P3, _P3, _P3, _P3)
    with pytest.raises(ValueError, match="out of range"):
        batch_norm_inference(_X, _P3, _P3, _P3, _P3, axis=3)
    with pytest.raises(ValueError, match="must have shape"):
        batch_norm_inference(_X, np.ones((3, 1)), _P3, _P3, _P3)  # not 1-D
    with pytest.raises(TypeError, match="floating-point"):
        batch_norm_inference(np.zeros((2, 3), dtype=np.int64), _P3, _P3, _P3, _P3)
    # One value per channel: no unbiased variance (PyTorch refuses too); biased is fine.
    with pytest.raises(ValueError, match="1 value"):
        batch_norm_training(np.zeros((1, 3)), _P3, _P3, _P3, _P3)
    res = batch_norm_training(np.ones((1, 3)), _P3, _P3, _P3, _P3, unbiased_running_var=False)
    np.testing.assert_array_equal(res.batch_var, np.zeros(3))
    with pytest.raises(ValueError, match="0 value"):
        batch_norm_training(np.zeros((0, 3)), _P3, _P3, _P3, _P3, unbiased_running_var=False)


def test_fold_length_mismatch() -> None:
    with pytest.raises(ValueError, match=r"var must have shape \(3,\)"):
        fold_scale(_P3, _P2, 1e-5)
    with pytest.raises(ValueError, match="scale must have shape"):
        fold_scale(np.ones((3, 1)), _P3, 1e-5)
    for name, args in {
        "bias": (_P3, _P2, _P3, _P3),
        "mean": (_P3, _P3, _P2, _P3),
        "var": (_P3, _P3, _P3, _P2),
    }.items():
        with pytest.raises(ValueError, match=rf"{name} must have shape \(3,\)"):
            folded_bias(*args, 1e-5)
    with pytest.raises(ValueError, match=r"producer_bias must have shape \(3,\)"):
        folded_bias(_P3, _P3, _P3, _P3, 1e-5, producer_bias=_P2)
