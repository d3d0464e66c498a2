"""When is a difference between data statistics and running statistics real?

Per channel, two effects are measured in the running statistics' own units:

* the standardized mean shift ``d = (mean_data - running_mean) / sqrt(running_var + eps)``;
* the log variance ratio ``L = ln((var_data + eps) / (running_var + eps))`` (eps on both
  sides, so a dead channel — zero variance in both — compares equal).

Each estimate carries its sampling error from the spread between samples
(:mod:`bnlint.drift.moments`): ``se(d) = se(mean) / sqrt(running_var + eps)`` and, by the
delta method, ``se(L) = se(var) / (var_data + eps)``. A channel is *beyond* a threshold
only when the estimate exceeds it by more than ``t * se``, with ``t`` the one-sided
Student-t quantile at ``confidence`` for N - 1 degrees of freedom (N samples): a
one-sided test of "the true effect is within the threshold" at level
``alpha = 1 - confidence``. Thresholds say how large a difference matters; the test says
whether the samples show it.

A layer is a mismatch when the number K of channels beyond a threshold could not plausibly
come from channels that are all within it: with each channel's two tests at level alpha,
K is at most Binomial(C, 2 alpha) under that hypothesis, and the layer is reported when
``P(Binomial >= K) <= alpha / L`` (Bonferroni over the L analysed layers, so the chance of
reporting any layer of a matching model stays below alpha) and K is at least
``min-fraction`` of the measured channels.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np


def t_quantile(p: float, df: float) -> float:
    """The Student-t quantile (Cornish-Fisher expansion, Abramowitz & Stegun 26.7.5;
    exact for 1 and 2 degrees of freedom). ``df = inf`` gives the normal quantile."""
    if df <= 0:
        return math.inf
    if df == 1:
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = NormalDist().inv_cdf(p)
    if math.isinf(df):
        return z
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0:
        return 0.0
    if p >= 1:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1)
        - math.lgamma(i + 1)
        - math.lgamma(n - i + 1)
        + i * log_p
        + (n - i) * log_q
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def smallest_significant_count(n: int, p: float, alpha: float) -> int:
    """The smallest K with P(Binomial(n, p) >= K) <= alpha (n + 1 when none).

    Every tail at once, in O(n): log binomial coefficients as a cumulative sum, tails as a
    reversed cumulative log-sum-exp (a layer of 2,048 channels took seconds term by term).
    """
    if alpha >= 1:
        return 0
    if p <= 0:
        return 1
    if p >= 1:
        return n + 1
    i = np.arange(n + 1, dtype=np.float64)
    log_comb = np.concatenate(([0.0], np.cumsum(np.log((n - i[1:] + 1) / i[1:]))))
    log_pmf = log_comb + i * math.log(p) + (n - i) * math.log1p(-p)
    log_tail = np.logaddexp.accumulate(log_pmf[::-1])[::-1]
    log_tail[0] = 0.0  # P(X >= 0) = 1 exactly
    # a relative margin keeps the verdict of the exact sum at the boundary (rounding only)
    significant = np.flatnonzero(log_tail <= math.log(alpha) + 1e-12)
    return int(significant[0]) if significant.size else n + 1
