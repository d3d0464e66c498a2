"""Name the bug class a wrong fold matches (wrong axis, groups, eps, bias, beta, precision).

Each known bug class is a hypothesis: the folded weights and bias it would produce are
computed from the original layer and the BN, and compared with the folded numbers at the
same tolerance as the check itself. The first hypothesis that matches names the problem.
"""

from __future__ import annotations

import numpy as np

from bnlint.analysis.reference import unit_roundoff
from bnlint.fold.affine import FAMILY, BNAffine, fold_bias, fold_weight
from bnlint.fold.affine import forward_fold as forward_fold_math
from bnlint.fold.layers import (
    ALGEBRA_ULPS,
    Expected,
    Layer,
    bias_errors,
    bn_terms,
    expected_fold,
    read_layer,
    weight_errors,
)
from bnlint.graph import ModelGraph, Node
from bnlint.onnx.model_io import round_to


def diagnose(
    source: Layer,
    result: Layer,
    want: Expected,
    affine: BNAffine,
    params: dict,
    eps: float,
    kind: str,
    weight_bad: bool,
    bias_bad: bool,
    tolerance: float,
) -> tuple[str, str]:
    """Name the bug class the folded numbers match, trying the known ones in turn."""
    family, groups = FAMILY[kind], source.groups
    for label, got, expected in (
        ("weights", result.weight, want.weight),
        ("bias", result.bias, want.bias),
    ):
        if got is None or np.shape(got) != np.shape(expected):
            continue
        overflow = np.isinf(got) & np.isfinite(expected)
        if overflow.any():
            largest = float(np.abs(expected[overflow]).max())
            return (
                "overflow",
                f"the folded {label} overflow {source.weight_dtype} (a value of {largest:.3g} "
                "became infinite)",
            )

    def with_mult(mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        alt = BNAffine(mult, params["bias"] - params["mean"] * mult)
        if kind == "forward_conv":
            return forward_fold_math(source.weight, source.bias, alt)
        return fold_weight(source.weight, alt, family, groups), fold_bias(source.bias, alt)

    def weight_matches(candidate: np.ndarray | None) -> bool:
        if candidate is None or candidate.shape != result.weight.shape:
            return False
        return bool(np.all(weight_errors(result.weight, candidate, family, groups) <= tolerance))

    def bias_matches(candidate: np.ndarray | None) -> bool:
        return candidate is not None and bool(
            np.all(bias_errors(result.bias, candidate, want.bias_scale) <= tolerance)
        )

    var, gamma = params["var"], params["scale"]
    with np.errstate(divide="ignore", invalid="ignore"):
        no_eps = gamma / np.sqrt(var)
        eps_outside = gamma / (np.sqrt(var) + eps)
    for mult, code, text in (
        (no_eps, "eps-ignored", f"eps ({eps:g}) was ignored: the scale is gamma / sqrt(var)"),
        (eps_outside, "eps-outside-sqrt", "eps was added outside the square root"),
    ):
        if eps > 0 and np.all(np.isfinite(mult)):
            weight, bias = with_mult(mult)
            if weight_matches(weight) and (not bias_bad or bias_matches(bias)):
                return code, text
    if weight_bad:
        for code, text, candidate in _axis_hypotheses(source, affine, kind):
            if weight_matches(candidate):
                return code, text
        if weight_matches(source.weight):
            return "weight-not-scaled", "the weight was not scaled by gamma / sqrt(var + eps)"
        for dtype in ("bfloat16", "float16"):  # coarsest first: bfloat16 values fit float16
            if unit_roundoff(dtype) <= unit_roundoff(source.weight_dtype):
                continue
            rounded_mult = round_to(affine.mult, dtype)
            loose = ALGEBRA_ULPS * unit_roundoff(dtype)
            errors = weight_errors(result.weight, want.weight, family, groups)
            exact = np.array_equal(round_to(result.weight, dtype), result.weight)
            if weight_matches(with_mult(rounded_mult)[0]) or (exact and np.all(errors <= loose)):
                return (
                    f"{dtype}-precision",
                    f"precision lost to a {dtype} downcast: the folded weights carry "
                    f"{dtype} rounding errors (up to {float(errors.max()):.2g} relative)",
                )
        return "weight-mismatch", "the folded weight is not the BN-scaled original weight"
    return _diagnose_bias(source, result, want, affine, params, kind, bias_matches)


def _diagnose_bias(
    source: Layer,
    result: Layer,
    want: Expected,
    affine: BNAffine,
    params: dict,
    kind: str,
    bias_matches,
) -> tuple[str, str]:
    own = source.bias
    if kind != "forward_conv":
        if own is not None and bias_matches(own + affine.shift):
            return "bias-not-scaled", "the producer's bias was not multiplied by the BN scale"
        if own is not None and np.any(own != 0) and bias_matches(affine.shift):
            return "bias-dropped", "the producer's bias was dropped"
        if source.beta != 1.0 and own is not None:
            raw = own / source.beta
            if bias_matches(source.beta * (raw * affine.mult + affine.shift)):
                return (
                    "gemm-beta-ignored",
                    f"Gemm beta={source.beta:g} was ignored: the BN shift was multiplied by beta",
                )
        if bias_matches(fold_bias(own, BNAffine(affine.mult, params["bias"]))):
            return "mean-ignored", "the running mean was not subtracted"
    else:
        if bias_matches(own if own is not None else np.zeros_like(want.bias)):
            return "shift-dropped", "the BN shift was not moved into the Conv bias"
    return "bias-mismatch", "the folded bias is not b * m + beta - mean * m"


def _axis_hypotheses(source: Layer, affine: BNAffine, kind: str):
    """Folded weights as the known wrong-axis bugs would produce them."""
    mult, weight, groups = affine.mult, source.weight, source.groups
    channels = mult.shape[0]
    if kind == "conv_transpose":
        if weight.size % channels == 0:
            rows = weight.reshape(channels, -1) * mult[:, None]
            yield (
                "wrong-axis",
                "ConvTranspose weight scaled on axis 0 (as if it were a Conv weight); its "
                "output channels are on axis 1",
                rows.reshape(weight.shape),
            )
        if groups > 1:
            per_group = weight.shape[1]
            shape = (1, per_group) + (1,) * (weight.ndim - 2)
            yield (
                "groups-ignored",
                f"grouped ConvTranspose (groups={groups}) scaled without the group offset: "
                "every group got the scales of the first group's channels",
                weight * mult[:per_group].reshape(shape),
            )
    for axis in range(weight.ndim):
        correct = {"conv": 0, "forward_conv": 1, "conv_transpose": 1}.get(kind, weight.ndim - 1)
        if axis != correct and weight.shape[axis] == channels:
            shape = [1] * weight.ndim
            shape[axis] = channels
            yield (
                "wrong-axis",
                f"weight scaled on axis {axis} instead of the output-channel axis {correct}",
                weight * mult.reshape(shape),
            )


def name_bug(
    original: ModelGraph, verdict, folded: ModelGraph, target: Node
) -> tuple[str, str] | None:
    """(code, text) of the known bug class a wrong fold into ``target`` matches, or None
    when the folded node is not a weighted node of the producer's layout."""
    source = read_layer(original, verdict.producer, verdict.add)
    result = read_layer(folded, target, None)
    if source is None or result is None or result.family != source.family:
        return None
    if result.groups != source.groups or result.weight.shape != source.weight.shape:
        return None
    affine, params, eps = bn_terms(original, verdict.bn)
    kind = verdict.kind or "conv"
    if kind in ("matmul_add",):
        return None
    want = expected_fold(source, affine, params, kind)
    tolerance = ALGEBRA_ULPS * unit_roundoff(source.weight_dtype)
    family = FAMILY[kind]
    w_err = weight_errors(result.weight, want.weight, family, source.groups)
    b_err = bias_errors(result.bias, want.bias, want.bias_scale)
    weight_bad = bool(np.max(w_err, initial=0.0) > tolerance)
    bias_bad = bool(np.max(b_err, initial=0.0) > tolerance)
    if not weight_bad and not bias_bad:
        return None
    return diagnose(
        source, result, want, affine, params, eps, kind, weight_bad, bias_bad, tolerance
    )
