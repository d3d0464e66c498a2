"""Streaming per-channel moments of a BatchNorm's input, with their sampling errors.

The unit of independence is the *sample* (one row of the sample file): the values of one
sample at different spatial positions are correlated, so counting them as independent
would understate every sampling error by the spatial size. Each batch therefore arrives
as per-sample, per-channel summaries — the mean ``a`` over the sample's spatial positions
and the within-sample variance ``w`` about that mean — computed by the runtime (in float32
on the tensor, centred per row) and accumulated here in float64.

The pooled statistics are exact: ``mean = mean(a)`` and, by the law of total variance,
``var = mean(w) + var_pop(a)``. Their sampling errors come from the spread *between*
samples (the delta method on per-sample quantities, so no Gaussian or kurtosis assumption
is made): ``se(mean)^2 = s_a^2 / N`` and ``se(var)^2 = s_u^2 / N`` with
``u_i = w_i + (a_i - mean)^2``.

Accumulation uses power sums about a fixed per-channel shift taken from the first batch
(the "assumed mean" method): with the shift within a few standard errors of the final
mean, sums up to the fourth power lose no useful precision in float64, merging is exact
and order-independent up to rounding, and memory is a few arrays per channel whatever the
number of samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_SUMS = ("s1", "s2", "s3", "s4", "w1", "w2", "wa", "waa")


@dataclass(frozen=True)
class ChannelStats:
    """Pooled per-channel statistics of one BN input over every sample and position."""

    samples: int  # N, the independent units
    positions: int  # values per sample and channel (spatial size)
    mean: np.ndarray
    var: np.ndarray  # population variance over all N * positions values
    se_mean: np.ndarray  # sampling standard error of ``mean`` (between samples)
    se_var: np.ndarray  # sampling standard error of ``var``
    # E[u^2] / E[u]^2 over samples, u the per-sample squared deviation (w + (a - mean)^2):
    # the kurtosis of per-sample values; how much of the variance a few samples can carry
    tail: np.ndarray | None = None

    @property
    def values(self) -> int:
        return self.samples * self.positions

    @property
    def unbiased_var(self) -> np.ndarray:
        """``var`` with Bessel's correction over all values (what PyTorch stores)."""
        n = self.values
        return self.var * (n / (n - 1)) if n > 1 else self.var


class SampleMoments:
    """Accumulates per-sample channel summaries ``(a, w)`` batch by batch."""

    def __init__(self, channels: int, positions: int) -> None:
        self.channels = channels
        self.positions = positions
        self.count = 0
        self.shift: np.ndarray | None = None
        self._sums = {name: np.zeros(channels, dtype=np.float64) for name in _SUMS}

    def update(self, a: np.ndarray, w: np.ndarray) -> None:
        """Add rows: ``a`` and ``w`` of shape (samples, channels)."""
        a = np.asarray(a, dtype=np.float64).reshape(-1, self.channels)
        w = np.asarray(w, dtype=np.float64).reshape(-1, self.channels)
        if a.shape[0] == 0:
            return
        if self.shift is None:
            self.shift = a.mean(axis=0)
        d = a - self.shift
        d2 = d * d
        sums = self._sums
        sums["s1"] += d.sum(axis=0)
        sums["s2"] += d2.sum(axis=0)
        sums["s3"] += (d2 * d).sum(axis=0)
        sums["s4"] += (d2 * d2).sum(axis=0)
        sums["w1"] += w.sum(axis=0)
        sums["w2"] += (w * w).sum(axis=0)
        sums["wa"] += (w * d).sum(axis=0)
        sums["waa"] += (w * d2).sum(axis=0)
        self.count += a.shape[0]

    def merge(self, other: SampleMoments) -> None:
        """Fold ``other`` (same channels) into this accumulator."""
        if other.count == 0:
            return
        if self.count == 0:
            self.shift = other.shift
            self.count = other.count
            self._sums = {k: v.copy() for k, v in other._sums.items()}
            return
        # Re-express other's sums about this shift: d' = d + delta.
        delta = other.shift - self.shift
        n, o = other.count, other._sums
        s1, s2, s3, s4 = o["s1"], o["s2"], o["s3"], o["s4"]
        self._sums["s1"] += s1 + n * delta
        self._sums["s2"] += s2 + 2 * delta * s1 + n * delta**2
        self._sums["s3"] += s3 + 3 * delta * s2 + 3 * delta**2 * s1 + n * delta**3
        self._sums["s4"] += (
            s4 + 4 * delta * s3 + 6 * delta**2 * s2 + 4 * delta**3 * s1 + n * delta**4
        )
        self._sums["w1"] += o["w1"]
        self._sums["w2"] += o["w2"]
        self._sums["wa"] += o["wa"] + delta * o["w1"]
        self._sums["waa"] += o["waa"] + 2 * delta * o["wa"] + delta**2 * o["w1"]
        self.count += n

    def result(self) -> ChannelStats:
        n = self.count
        if n == 0 or self.shift is None:
            raise ValueError("no samples were accumulated")
        s = {k: v / n for k, v in self._sums.items()}  # raw moments about the shift
        c = s["s1"]  # mean(a) - shift
        mean = self.shift + c
        m2 = np.maximum(s["s2"] - c * c, 0.0)  # central moments of a
        m4 = s["s4"] - 4 * c * s["s3"] + 6 * c * c * s["s2"] - 3 * c**4
        w_mean = s["w1"]
        var = w_mean + m2
        # E[u^2] with u = w + (a - mean)^2, from the raw sums about the shift.
        w_dev2 = s["waa"] - 2 * c * s["wa"] + c * c * s["w1"]
        u2 = s["w2"] + 2 * w_dev2 + np.maximum(m4, 0.0)
        var_u = np.maximum(u2 - var * var, 0.0)
        bessel = n / (n - 1) if n > 1 else np.inf
        with np.errstate(invalid="ignore", divide="ignore"):
            se_mean = np.sqrt(m2 * bessel / n)
            se_var = np.sqrt(var_u * bessel / n)
            tail = np.where(var > 0, np.maximum(u2, var * var) / (var * var), 1.0)
        return ChannelStats(n, self.positions, mean, var, se_mean, se_var, tail)


def row_summaries(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample, per-channel mean and within-sample variance of ``x`` (N, C, *spatial)."""
    rows = x.reshape(x.shape[0], x.shape[1], -1)
    if rows.shape[2] == 1:
        return rows[:, :, 0].astype(np.float64), np.zeros(rows.shape[:2])
    a = rows.mean(axis=2, dtype=np.float64)
    centred = rows - a[:, :, None].astype(rows.dtype)
    w = np.einsum("ncs,ncs->nc", centred, centred, dtype=np.float64) / rows.shape[2]
    return a, w
