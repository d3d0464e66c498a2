"""Verification level 1 (algebraic, no runtime): is each fold exactly the BN's affine map?

For every folded BN the folded producer is compared, per output channel and in float64,
with what the BN algebra prescribes: weight scaled by ``gamma / sqrt(var + eps)`` along
the layout's output-channel axis, bias mapped to ``b * m + beta - mean * m``. The
tolerance is a few units of rounding in the *original* model's dtype, so a fold that is
exact up to one rounding passes and one that lost precision (a float16 downcast) fails.

When a fold is wrong, the known bug classes are tried as hypotheses (wrong axis, groups
ignored, eps ignored, producer bias not scaled, Gemm beta ignored, float16 rounding) and
the one the folded weights match is named.
"""

from __future__ import annotations

import numpy as np

from bnlint.fold.affine import FAMILY, BNAffine
from bnlint.fold.diagnose import diagnose
from bnlint.fold.layers import (
    ALGEBRA_ULPS,
    AlgebraResult,
    Layer,
    _bn_terms,
    _expected,
    bias_errors,
    read_layer,
    weight_errors,
)
from bnlint.fold.verdicts import FoldRecord
from bnlint.graph import ModelGraph, Node
from bnlint.reference import unit_roundoff


def check_algebra(
    original: ModelGraph, record: FoldRecord, folded: ModelGraph, target: Node, add: Node | None
) -> AlgebraResult:
    """Level 1 for one folded BN: ``target`` (+ ``add``) in ``folded`` against the original."""
    verdict = record.verdict
    source = read_layer(original, verdict.producer, verdict.add)
    result = read_layer(folded, target, add)
    _, params, eps = _bn_terms(original, verdict.bn)
    return check_layers(source, result, params, eps, verdict.kind or "conv")


def check_layers(
    source: Layer | None,
    result: Layer | None,
    params: dict[str, np.ndarray],
    eps: float,
    kind: str,
) -> AlgebraResult:
    """Level 1 on numbers: ``result`` must be ``source`` with the BN (``params``) folded in."""
    dtype = source.weight_dtype if source is not None else "float32"
    tolerance = ALGEBRA_ULPS * unit_roundoff(dtype)
    if source is None or result is None:
        return AlgebraResult.unchecked(
            tolerance,
            "unreadable",
            "the weights of the producer or the folded node are not constant",
        )
    family = FAMILY[kind]
    if result.family != family or result.groups != source.groups:
        return AlgebraResult.unchecked(
            tolerance,
            "layout-changed",
            f"the folded node is a {result.family} with groups={result.groups}, "
            f"the original a {family} with groups={source.groups}",
        )
    if result.structure != source.structure:
        return AlgebraResult.unchecked(
            tolerance,
            "attributes-changed",
            f"the folded node's attributes changed: {dict(result.structure)} "
            f"instead of {dict(source.structure)}",
        )
    params = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in params.items()}
    affine = BNAffine.from_params(**params, eps=eps)
    want = _expected(source, affine, params, kind)
    if kind == "forward_conv":
        bias_tolerance = tolerance * (1 + np.sqrt(source.weight[0].size))
    else:
        bias_tolerance = tolerance
    w_err = weight_errors(result.weight, want.weight, family, source.groups)
    b_err = bias_errors(result.bias, want.bias, want.bias_scale)
    wrong = (w_err > tolerance) | (b_err > bias_tolerance)
    worst = int(np.argmax(np.maximum(w_err, b_err))) if wrong.any() else None
    w_max, b_max = float(np.max(w_err, initial=0.0)), float(np.max(b_err, initial=0.0))
    if not wrong.any():
        return AlgebraResult(True, w_max, b_max, tolerance)
    code, text = diagnose(
        source,
        result,
        want,
        affine,
        params,
        eps,
        kind,
        w_max > tolerance,
        b_max > bias_tolerance,
        tolerance,
    )
    detail = (
        f"{int(wrong.sum())} of {wrong.size} channels wrong, worst channel {worst}: "
        f"weight error {w_max:.3g}, bias error {b_max:.3g} (relative; tolerance {tolerance:.2g})"
    )
    return AlgebraResult(
        False, w_max, b_max, tolerance, worst, int(wrong.sum()), code, f"{text}; {detail}"
    )
