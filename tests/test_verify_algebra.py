"""The algebraic level on numbers: exact folds pass, each bug class is named, dtype sets the bar."""

from __future__ import annotations

import numpy as np
import pytest

from bnlint.fold.affine import BNAffine, fold_bias, fold_weight, forward_fold
from bnlint.fold.algebra import check_layers
from bnlint.fold.layers import Layer
from bnlint.fold.results import numeric_tolerance, tensor_error
from bnlint.onnx_io import round_to
from bnlint.reference import batch_norm_inference, unit_roundoff

RNG = np.random.default_rng(0)
C = 6
PARAMS = {
    "scale": RNG.uniform(0.5, 1.5, C),
    "bias": RNG.normal(0, 0.2, C),
    "mean": RNG.normal(0, 0.5, C),
    "var": RNG.uniform(0.3, 2.0, C),
}
EPS = 1e-3
AFFINE = BNAffine.from_params(**PARAMS, eps=EPS)
CONV = Layer("conv", RNG.normal(0, 0.3, (C, C, 3, 3)), RNG.normal(0, 0.1, C), "float32")


def folded(weight=None, bias=None, layer=CONV, dtype="float32") -> Layer:
    w = fold_weight(layer.weight, AFFINE, layer.family, layer.groups) if weight is None else weight
    b = fold_bias(layer.bias, AFFINE) if bias is None else bias
    return Layer(
        layer.family,
        round_to(w, dtype),
        round_to(b, dtype),
        dtype,
        layer.groups,
        layer.beta,
        layer.structure,
    )


def test_fold_algebra_matches_the_reference_batch_norm() -> None:
    """conv(x) then BN equals the folded affine map, checked on a 1x1 'conv' as a matmul."""
    x = RNG.normal(0, 1, (5, C))
    weight, bias = RNG.normal(0, 0.3, (C, C)), RNG.normal(0, 0.1, C)
    produced = x @ weight.T + bias
    expected = batch_norm_inference(produced, **PARAMS, eps=EPS)
    new_w = fold_weight(weight, AFFINE, "conv")
    np.testing.assert_allclose(x @ new_w.T + fold_bias(bias, AFFINE), expected, rtol=1e-12)


def test_forward_fold_matches_bn_then_linear() -> None:
    x = RNG.normal(0, 1, (5, C))
    weight, bias = RNG.normal(0, 0.3, (4, C, 1, 1)), RNG.normal(0, 0.1, 4)
    new_w, new_b = forward_fold(weight, bias, AFFINE)
    normalised = batch_norm_inference(x, **PARAMS, eps=EPS)
    np.testing.assert_allclose(
        x @ new_w[:, :, 0, 0].T + new_b, normalised @ weight[:, :, 0, 0].T + bias, rtol=1e-12
    )


def test_exact_fold_passes_with_float32_rounding_only() -> None:
    result = check_layers(CONV, folded(), PARAMS, EPS, "conv")
    assert result.ok
    assert result.weight_error <= unit_roundoff("float32")


@pytest.mark.parametrize(
    ("name", "make", "code"),
    [
        (
            "conv scaled on input axis",
            lambda: folded(weight=CONV.weight * AFFINE.mult.reshape(1, C, 1, 1)),
            "wrong-axis",
        ),
        (
            "eps outside sqrt",
            lambda: folded(*_with(PARAMS["scale"] / (np.sqrt(PARAMS["var"]) + EPS))),
            "eps-outside-sqrt",
        ),
        ("weight untouched", lambda: folded(weight=CONV.weight), "weight-not-scaled"),
        (
            "mean ignored",
            lambda: folded(bias=CONV.bias * AFFINE.mult + PARAMS["bias"]),
            "mean-ignored",
        ),
        ("producer bias dropped", lambda: folded(bias=AFFINE.shift), "bias-dropped"),
        ("bfloat16 store", lambda: folded(dtype="bfloat16"), "bfloat16-precision"),
    ],
)
def test_bug_classes_are_named(name: str, make, code: str) -> None:
    result = check_layers(CONV, make(), PARAMS, EPS, "conv")
    assert not result.ok
    assert result.problem_code == code, result.problem


def _with(mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    affine = BNAffine(mult, PARAMS["bias"] - PARAMS["mean"] * mult)
    return fold_weight(CONV.weight, affine, "conv"), fold_bias(CONV.bias, affine)


def test_tolerance_follows_the_original_dtype() -> None:
    half = Layer(
        "conv", round_to(CONV.weight, "float16"), round_to(CONV.bias, "float16"), "float16"
    )
    stored_in_half = folded(layer=half, dtype="float16")
    assert check_layers(half, stored_in_half, PARAMS, EPS, "conv").ok
    downcast = folded(dtype="float16")  # a float32 model whose fold was stored in float16
    result = check_layers(CONV, downcast, PARAMS, EPS, "conv")
    assert not result.ok and result.problem_code == "float16-precision"


def test_structural_changes_are_reported() -> None:
    moved = Layer(
        "conv", folded().weight, folded().bias, "float32", structure=(("strides", (2, 2)),)
    )
    assert check_layers(CONV, moved, PARAMS, EPS, "conv").problem_code == "attributes-changed"
    grouped = Layer("conv", folded().weight, folded().bias, "float32", groups=2)
    assert check_layers(CONV, grouped, PARAMS, EPS, "conv").problem_code == "layout-changed"


def test_overflow_is_named() -> None:
    huge = {**PARAMS, "var": np.full(C, 1e-12), "scale": np.full(C, 50.0)}
    affine = BNAffine.from_params(**huge, eps=0.0)
    weight = round_to(fold_weight(round_to(CONV.weight, "float16"), affine, "conv"), "float16")
    half = Layer("conv", round_to(CONV.weight, "float16"), None, "float16")
    result = check_layers(half, Layer("conv", weight, affine.shift, "float16"), huge, 0.0, "conv")
    assert result.problem_code == "overflow" and "overflow float16" in result.problem


def test_numeric_tolerance_scales_with_unit_roundoff() -> None:
    assert numeric_tolerance("float32") == 2e-6
    assert numeric_tolerance("float16") == pytest.approx(2e-6 * 2.0**13)
    assert numeric_tolerance("float32", scale=10) == pytest.approx(2e-5)


def test_tensor_error_is_relative_to_magnitude_and_non_finite_aware() -> None:
    reference = np.array([0.0, 1e-9, 4.0, np.inf, np.nan], dtype=np.float32)
    same_specials = np.array([1e-6, 0.0, 4.0, np.inf, np.nan], dtype=np.float32)
    error = tensor_error("y", reference, same_specials)
    assert error.max_abs == pytest.approx(1e-6)
    assert error.rel == pytest.approx(1e-6 / 4.0)
    broken = tensor_error("y", reference, np.array([0, 0, 4, 1, np.nan], dtype=np.float32))
    assert broken.max_abs == np.inf
