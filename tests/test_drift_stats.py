"""Streaming moments and the significance test behind BN021."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bnlint.drift.moments import SampleMoments, row_summaries
from bnlint.drift.significance import binomial_tail, smallest_significant_count, t_quantile


def _correlated(rng: np.random.Generator, n: int, offset: float) -> np.ndarray:
    """Samples whose positions share a per-sample level (spatially correlated), skewed."""
    level = rng.standard_normal((n, 4, 1)) * np.array([1.0, 0.1, 3.0, 0.5])[None, :, None]
    return (offset + level + rng.standard_exponential((n, 4, 50)) * 0.5).astype(np.float32)


def _accumulate(x: np.ndarray, batch: int) -> SampleMoments:
    acc = SampleMoments(x.shape[1], x.shape[2])
    for start in range(0, len(x), batch):
        acc.update(*row_summaries(x[start : start + batch]))
    return acc


@pytest.mark.parametrize("offset", [0.0, 1e3, -5e4])
def test_pooled_moments_match_a_two_pass_float64_computation(offset: float) -> None:
    x = _correlated(np.random.default_rng(0), 300, offset)
    result = _accumulate(x, 7).result()
    flat = x.transpose(1, 0, 2).reshape(4, -1).astype(np.float64)
    np.testing.assert_allclose(result.mean, flat.mean(axis=1), rtol=1e-12, atol=1e-9)
    # float32 data far from zero: the variance keeps the precision of the data itself
    np.testing.assert_allclose(result.var, flat.var(axis=1), rtol=1e-5)
    assert result.values == 300 * 50


def test_batching_and_merging_do_not_change_the_result() -> None:
    x = _correlated(np.random.default_rng(1), 200, 10.0)
    whole = _accumulate(x, 200).result()
    small = _accumulate(x, 3).result()
    left, right = _accumulate(x[:77], 5), _accumulate(x[77:], 11)
    left.merge(right)
    for other in (small, left.result()):
        for field in ("mean", "var", "se_mean", "se_var", "tail"):
            np.testing.assert_allclose(getattr(other, field), getattr(whole, field), rtol=1e-9)


def test_tail_is_the_kurtosis_of_the_per_sample_squared_deviations() -> None:
    x = _correlated(np.random.default_rng(3), 120, 300.0).astype(np.float64)
    result = _accumulate(x, 9).result()
    a, w = x.mean(axis=2), x.var(axis=2)
    u = w + (a - a.mean(axis=0)) ** 2  # each sample's share of the pooled variance
    np.testing.assert_allclose(result.tail, (u**2).mean(axis=0) / u.mean(axis=0) ** 2, rtol=1e-6)
    spiky = x.copy()
    spiky[0, 1] *= 40  # one sample carries most of channel 1's variance
    assert _accumulate(spiky, 9).result().tail[1] > 50 * result.tail[1]


def test_accumulator_size_does_not_grow_with_samples() -> None:
    acc = SampleMoments(4, 50)
    rng = np.random.default_rng(2)
    acc.update(*row_summaries(_correlated(rng, 10, 0)))
    sizes = {name: array.nbytes for name, array in acc._sums.items()}
    for _ in range(50):
        acc.update(*row_summaries(_correlated(rng, 10, 0)))
    assert {name: array.nbytes for name, array in acc._sums.items()} == sizes


def test_standard_errors_match_the_spread_over_repeated_draws() -> None:
    """The between-sample standard errors describe how estimates vary from draw to draw,
    with correlated positions and a skewed distribution (seeded: deterministic)."""
    rng = np.random.default_rng(3)
    means, variances, se_mean, se_var = [], [], [], []
    for _ in range(300):
        result = _accumulate(_correlated(rng, 40, 0.0), 40).result()
        means.append(result.mean)
        variances.append(result.var)
        se_mean.append(result.se_mean)
        se_var.append(result.se_var)
    ratio_mean = np.std(means, axis=0) / np.mean(se_mean, axis=0)
    ratio_var = np.std(variances, axis=0) / np.mean(se_var, axis=0)
    assert np.all((ratio_mean > 0.85) & (ratio_mean < 1.15)), ratio_mean
    assert np.all((ratio_var > 0.8) & (ratio_var < 1.25)), ratio_var
    # counting every position as independent would understate the error several-fold
    naive = np.sqrt(np.mean(variances, axis=0) / (40 * 50))
    assert np.all((np.std(means, axis=0) > 2 * naive)[[0, 2]])  # the strongly shared channels


def test_rank_two_inputs_have_one_value_per_sample() -> None:
    x = np.random.default_rng(4).standard_normal((64, 6)).astype(np.float32)
    a, w = row_summaries(x)
    assert a.shape == (64, 6) and not w.any()
    acc = SampleMoments(6, 1)
    acc.update(a, w)
    result = acc.result()
    np.testing.assert_allclose(result.var, x.astype(np.float64).var(axis=0), rtol=1e-12)
    np.testing.assert_allclose(result.se_mean, x.std(axis=0, ddof=1) / 8, rtol=1e-6)


@pytest.mark.parametrize(
    ("df", "expected"),  # Student-t 0.99 quantiles from published tables
    [(1, 31.821), (2, 6.965), (3, 4.541), (5, 3.365), (10, 2.764), (30, 2.457), (120, 2.358)],
)
def test_t_quantile(df: int, expected: float) -> None:
    assert t_quantile(0.99, df) == pytest.approx(expected, rel=5e-3)


def test_t_quantile_tends_to_the_normal() -> None:
    assert t_quantile(0.99, math.inf) == pytest.approx(2.3263, rel=1e-4)
    assert t_quantile(0.975, 1e6) == pytest.approx(1.96, rel=1e-3)


@pytest.mark.parametrize(("n", "p"), [(8, 0.02), (16, 0.3), (60, 0.001), (200, 0.5)])
def test_binomial_tail_matches_the_sum(n: int, p: float) -> None:
    for k in range(n + 1):
        direct = sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))
        assert binomial_tail(k, n, p) == pytest.approx(direct, rel=1e-9, abs=1e-300)


def test_smallest_significant_count() -> None:
    assert smallest_significant_count(8, 0.02, 0.0025) == 3
    assert binomial_tail(3, 8, 0.02) <= 0.0025 < binomial_tail(2, 8, 0.02)
    assert smallest_significant_count(4, 0.9, 1e-9) == 5  # never significant


@pytest.mark.parametrize(("n", "p"), [(1, 0.02), (8, 0.02), (53, 0.3), (300, 0.001), (2048, 0.02)])
def test_smallest_significant_count_is_the_first_k_whose_tail_is_small(n: int, p: float) -> None:
    for alpha in (0.5, 0.01, 0.01 / 53, 1e-12):
        k = smallest_significant_count(n, p, alpha)
        assert k == n + 1 or binomial_tail(k, n, p) <= alpha * (1 + 1e-9)
        assert k == 0 or binomial_tail(k - 1, n, p) > alpha * (1 - 1e-9)
