"""The criteria: how far a correct fold may move a tensor, derived from the computation.

**Algebraic level** (exact evaluation, no runtime). Original and folded region are
evaluated in float64 on the same probe; the only error a correct fold may add is the
rounding of the values it stores. Each stored value is within one unit roundoff ``u`` of
the exact one (relative), so the output moves by at most ``u * mag`` per rounding, where
``mag`` is the original region evaluated on absolute values (``|W||x| + |b|`` through
``(|y| + |mean|)|scale| + |beta|``; Higham's running error bound). bnlint allows
:data:`ROUNDINGS` roundings (a tool may compute the scale, the product and the shift in
the model's dtype) plus a floor of that many smallest normal numbers per element, where a
stored value may underflow:

    |folded - original| <= ROUNDINGS * (u * mag + tiny)          element by element

**Numeric level** (a runtime on the same probe). The runtime's own float arithmetic
rounds differently on both sides; against the float64 evaluation of the original region,
the folded region's error must stay within :data:`NUMERIC_FACTOR` times the original
region's own error, with a floor of one unit of rounding of the tensor's largest value:

    max |folded_rt - exact| <= NUMERIC_FACTOR * max(max |original_rt - exact|, u * max |exact|)

**Model outputs** (both whole models in a runtime). The original model is also run after
a *null fold*: each foldable BN's producer weights and bias scaled per output channel by
a random factor in [1, 2), its running mean scaled and its scale divided by the same
factor; in exact arithmetic nothing changes, in float arithmetic the outputs move as a
fold moves them. A fold may move an output by :data:`OUTPUT_FACTOR` times that much, with
the same floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bnlint.analysis.reference import unit_roundoff

ROUNDINGS = 8
NUMERIC_FACTOR = 4.0
OUTPUT_FACTOR = 8.0
_TINY = {"float64": 2.2250738585072014e-308, "float32": 1.1754944e-38,
         "float16": 6.103515625e-05, "bfloat16": 1.1754944e-38}  # fmt: skip

ALGEBRAIC_CRITERION = "|folded - original| <= 8 (u |terms| + tiny) per element (float64)"
NUMERIC_CRITERION = "max |folded - exact| <= 4 max(max |original - exact|, u max |exact|)"
OUTPUT_CRITERION = "max |folded - original| <= 8 max(null-fold change, u max |original|)"


def smallest_normal(dtype: str | None) -> float:
    return _TINY.get(dtype or "float32", _TINY["float32"])


@dataclass(frozen=True)
class Check:
    """One comparison: the largest error, the bound that applied there, and the margin."""

    ok: bool
    error: float  # at the element closest to its bound
    bound: float
    tensor: str
    criterion: str
    reference_error: float | None = None  # numeric: the original's own error
    level: str = "algebraic"

    @property
    def margin(self) -> float:
        """bound / error at the tightest element (>= 1 passes; inf when exact)."""
        if self.error == 0:
            return float("inf")
        return self.bound / self.error

    def evidence(self) -> dict[str, Any]:
        found = {
            "criterion": self.criterion,
            "tensor": self.tensor,
            "error": self.error,
            "bound": self.bound,
            "margin": self.margin,
        }
        if self.reference_error is not None:
            found["original_error"] = self.reference_error
        return found


def algebraic(
    name: str, original: np.ndarray, folded: np.ndarray, mag: np.ndarray, dtype: str
) -> Check:
    """The algebraic criterion on one output (float64 values of both regions)."""
    if original.shape != folded.shape:
        return Check(False, float("inf"), 0.0, name, f"shape {folded.shape} != {original.shape}")
    u = unit_roundoff(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(folded - original)
        bound = ROUNDINGS * (u * np.broadcast_to(mag, original.shape) + smallest_normal(dtype))
    same = (folded == original) | (np.isnan(folded) & np.isnan(original))
    diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))
    bound = np.where(np.isfinite(bound), bound, np.inf)
    if diff.size == 0:
        return Check(True, 0.0, 0.0, name, ALGEBRAIC_CRITERION)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(diff == 0, 0.0, diff / bound)
    worst = int(np.argmax(ratio))
    error, limit = float(diff.flat[worst]), float(bound.flat[worst])
    return Check(bool(ratio.flat[worst] <= 1.0), error, limit, name, ALGEBRAIC_CRITERION)


def numeric(
    name: str,
    exact: np.ndarray,
    original_rt: np.ndarray,
    folded_rt: np.ndarray,
    dtype: str,
    scale: float = 1.0,
) -> Check:
    """The numeric criterion on one output (runtime values of both regions, same probe)."""
    exact = np.asarray(exact, np.float64)
    if np.shape(folded_rt) != exact.shape or np.shape(original_rt) != exact.shape:
        return Check(False, float("inf"), 0.0, name, NUMERIC_CRITERION, level="numeric")
    ours = _max_error(exact, np.asarray(original_rt, np.float64))
    theirs = _max_error(exact, np.asarray(folded_rt, np.float64))
    largest = float(np.abs(exact[np.isfinite(exact)]).max(initial=0.0))
    floor = unit_roundoff(dtype) * largest + smallest_normal(dtype)
    bound = scale * NUMERIC_FACTOR * max(ours, floor)
    return Check(theirs <= bound, theirs, bound, name, NUMERIC_CRITERION, ours, "numeric")


def outputs(
    name: str,
    original: np.ndarray,
    folded: np.ndarray,
    null_fold: np.ndarray | None,
    dtype: str,
    scale: float = 1.0,
) -> Check:
    """The model-output criterion (runtime values; ``null_fold`` may be missing)."""
    original = np.asarray(original, np.float64)
    if np.shape(folded) != original.shape:
        return Check(False, float("inf"), 0.0, name, OUTPUT_CRITERION, level="outputs")
    change = _max_error(original, np.asarray(folded, np.float64))
    noise = 0.0 if null_fold is None else _max_error(original, np.asarray(null_fold, np.float64))
    largest = float(np.abs(original[np.isfinite(original)]).max(initial=0.0))
    floor = unit_roundoff(dtype) * largest + smallest_normal(dtype)
    bound = scale * OUTPUT_FACTOR * max(noise, floor)
    return Check(change <= bound, change, bound, name, OUTPUT_CRITERION, noise, "outputs")


def _max_error(reference: np.ndarray, actual: np.ndarray) -> float:
    """max |actual - reference|, equal infinities and NaNs counting as no error."""
    if reference.shape != actual.shape:
        return float("inf")
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(actual - reference)
    same = (actual == reference) | (np.isnan(actual) & np.isnan(reference))
    diff = np.where(same, 0.0, np.where(np.isnan(diff), np.inf, diff))
    return float(diff.max(initial=0.0))
