"""Compare measured BN input statistics with running statistics, layer by layer.

:func:`compare` turns each analysed BN's :class:`~bnlint.drift.moments.ChannelStats` into
a :class:`LayerDrift` (per-channel effects, their sampling errors, which channels are
beyond the thresholds, whether the layer is a mismatch — see
:mod:`bnlint.drift.significance`) and marks the *roots*: mismatching layers none of whose
upstream analysed BNs mismatch. The first root in graph order is where the drift starts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bnlint.drift.moments import ChannelStats
from bnlint.drift.significance import binomial_tail, smallest_significant_count, t_quantile
from bnlint.drift.sites import BnSite
from bnlint.graph import ModelGraph
from bnlint.rule import RuleInputError

# Below this many samples the t-test on per-sample statistics is not trusted (the usual
# bound for the t approximation; measured in BENCHMARKS.md: a trained CNN whose head
# features cluster by class was falsely reported in 8 of 40 runs with 8 samples).
CLT_SAMPLES = 30


@dataclass(frozen=True)
class Thresholds:
    mean_shift: float = 0.5  # running standard deviations
    variance_ratio: float = 2.0  # either way
    confidence: float = 0.99
    min_fraction: float = 0.05

    @classmethod
    def from_options(cls, options: Mapping[str, object]) -> Thresholds:
        return cls(
            mean_shift=float(options.get("mean-shift", cls.mean_shift)),
            variance_ratio=float(options.get("variance-ratio", cls.variance_ratio)),
            confidence=float(options.get("confidence", cls.confidence)),
            min_fraction=float(options.get("min-fraction", cls.min_fraction)),
        )

    def check(self) -> None:
        """Raise RuleInputError (the run exits 2) for settings that make no sense."""
        problems = []
        if not self.mean_shift > 0:
            problems.append("mean-shift must be positive")
        if not self.variance_ratio > 1:
            problems.append("variance-ratio must be above 1")
        if not 0.5 < self.confidence < 1:
            problems.append("confidence must be between 0.5 and 1")
        if not 0 <= self.min_fraction <= 1:
            problems.append("min-fraction must be between 0 and 1")
        if problems:
            raise RuleInputError(f"running-stats-data-mismatch: {'; '.join(problems)}")


@dataclass
class LayerDrift:
    site: BnSite
    stats: ChannelStats
    shift: np.ndarray  # signed standardized mean shift per channel
    log_ratio: np.ndarray  # ln((var + eps) / (running_var + eps))
    se_shift: np.ndarray
    se_log_ratio: np.ndarray
    measured: np.ndarray  # bool: finite estimates (gamma too small: unmeasured)
    mean_beyond: np.ndarray  # bool
    var_beyond: np.ndarray  # bool
    critical: float  # the t quantile used
    needed: int  # channels beyond a threshold that make the layer a mismatch
    p_value: float
    mismatch: bool = False
    underpowered: bool = False
    samples_needed: int | None = None
    root: bool = False
    upstream_roots: list[int] = field(default_factory=list)  # ids of roots above a mismatch

    @property
    def beyond(self) -> np.ndarray:
        return self.mean_beyond | self.var_beyond

    @property
    def ratio(self) -> np.ndarray:
        return np.exp(self.log_ratio)


@dataclass
class DriftProfile:
    layers: list[LayerDrift]
    skipped: list[tuple[str, str]]  # (BN name, reason)
    samples: int
    thresholds: Thresholds
    diagnosis: object | None = None  # bnlint.drift.diagnose.Diagnosis for the first root

    @property
    def first(self) -> LayerDrift | None:
        return next((layer for layer in self.layers if layer.root), None)

    @property
    def mismatches(self) -> list[LayerDrift]:
        return [layer for layer in self.layers if layer.mismatch]


def layer_drift(
    site: BnSite,
    stats: ChannelStats,
    thresholds: Thresholds,
    layers: int,
    *,
    mean: np.ndarray | None = None,
    var: np.ndarray | None = None,
) -> LayerDrift:
    """One layer's verdict; ``mean``/``var`` replace the site's running statistics."""
    running_mean = site.mean if mean is None else mean
    running_var = site.var if var is None else var
    reference = np.sqrt(running_var + site.eps)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        shift = (stats.mean - running_mean) / reference
        se_shift = stats.se_mean / reference
        log_ratio = np.log((np.maximum(stats.var, 0) + site.eps) / (running_var + site.eps))
        se_log = stats.se_var / (np.maximum(stats.var, 0) + site.eps)
    measured = np.isfinite(shift) & np.isfinite(log_ratio)
    alpha = 1 - thresholds.confidence
    critical = t_quantile(thresholds.confidence, stats.samples - 1)
    if stats.samples >= CLT_SAMPLES:
        with np.errstate(invalid="ignore"):
            mean_margin = np.abs(shift) - thresholds.mean_shift - critical * se_shift
            var_margin = np.abs(log_ratio) - math.log(thresholds.variance_ratio) - critical * se_log
        unseen = _unseen_tail_explains(log_ratio, stats, measured, thresholds)
        var_margin = np.where(unseen, -1.0, var_margin)
    else:
        mean_margin, var_margin = _distribution_free(shift, log_ratio, stats.samples, thresholds)
    mean_beyond = measured & (np.nan_to_num(mean_margin, nan=-1.0) > 0)
    var_beyond = measured & (np.nan_to_num(var_margin, nan=-1.0) > 0)
    count = int(measured.sum())
    beyond = int((mean_beyond | var_beyond).sum())
    per_channel = min(1.0, 2 * alpha)
    layer_alpha = alpha / max(layers, 1)
    p_value = binomial_tail(beyond, count, per_channel)
    needed = max(
        smallest_significant_count(count, per_channel, layer_alpha),
        math.ceil(thresholds.min_fraction * count),
        1,
    )
    drift = LayerDrift(
        site=site,
        stats=stats,
        shift=shift,
        log_ratio=log_ratio,
        se_shift=se_shift,
        se_log_ratio=se_log,
        measured=measured,
        mean_beyond=mean_beyond,
        var_beyond=var_beyond,
        critical=critical,
        needed=needed,
        p_value=p_value,
        mismatch=count > 0 and beyond >= needed,
    )
    _power(drift, thresholds)
    return drift


def _unseen_tail_explains(
    log_ratio: np.ndarray, stats: ChannelStats, measured: np.ndarray, thresholds: Thresholds
) -> np.ndarray:
    """Channels whose variance looks too small only as a sample that missed rare inputs can.

    The variance is the mean of the per-sample squared deviations ``u >= 0`` (within-sample
    variance plus squared offset of the sample mean). Data within the threshold have
    ``E[u] >= r / rho`` (``r`` the running variance); the samples show ``mean(u) = R r``,
    a relative shortfall of at least ``m = 1 - rho R``. For non-negative independent
    values Maurer's inequality bounds that lower tail by ``exp(-N m^2 / (2 kappa))`` with
    ``kappa = E[u^2] / E[u]^2`` -- no other assumption; a large ``kappa`` means a few rare
    samples carry much of the variance, and a sample of N may miss them. A decrease is
    evidence only when the bound is below ``alpha``. A sample that missed a channel's rare
    inputs also underestimates that channel's ``kappa``, so the largest one any channel of
    the layer shows stands in for every channel: a layer whose samples show rare large
    inputs in some channels (class-selective features, spikes) may have missed them in
    the others. The t-test alone trusts the sample's own spread, which is exactly what
    such a sample gets wrong.
    """
    if stats.tail is None:
        return np.zeros(log_ratio.shape, dtype=bool)
    rho = thresholds.variance_ratio
    alpha = 1 - thresholds.confidence
    usable = measured & np.isfinite(stats.tail)
    kappa = float(np.max(stats.tail[usable], initial=1.0))
    with np.errstate(invalid="ignore", over="ignore"):
        missed_share = np.clip(1 - rho * np.exp(log_ratio), 0.0, 1.0)
        bound = 2 * kappa * math.log(1 / alpha)
        return (log_ratio < 0) & (stats.samples * missed_share**2 < bound)


def _distribution_free(
    shift: np.ndarray, log_ratio: np.ndarray, samples: int, thresholds: Thresholds
) -> tuple[np.ndarray, np.ndarray]:
    """Margins valid for any distribution of the samples, for fewer than CLT_SAMPLES.

    Below that, a sample can easily miss part of the distribution (a class, a mode) and
    then underestimate its own spread, so the t-test's standard errors cannot be trusted.
    The null hypothesis itself bounds the spread instead: data within the thresholds have
    a variance of at most ``rho`` running variances, so the mean of N per-sample means has
    a standard deviation of at most ``sqrt(rho / N)`` running standard deviations, and by
    Cantelli's inequality a shift beyond ``tau + k sqrt(rho / N)`` with
    ``k = sqrt(1 / alpha - 1)`` occurs with probability at most alpha. Markov's inequality
    bounds the variance from above (a ratio beyond ``rho / alpha``); nothing bounds it from
    below, so a variance that looks too small is not reported with so few samples.
    """
    alpha = 1 - thresholds.confidence
    k = math.sqrt(1 / alpha - 1)
    rho = thresholds.variance_ratio
    with np.errstate(invalid="ignore"):
        mean_margin = np.abs(shift) - thresholds.mean_shift - k * math.sqrt(rho / samples)
        var_margin = log_ratio - math.log(rho / alpha)
    return mean_margin, var_margin


def _power(drift: LayerDrift, thresholds: Thresholds) -> None:
    """Too few samples: in a typical channel, not even twice the threshold would show
    (or fewer than CLT_SAMPLES, where only gross drift is tested)."""
    measured = drift.measured
    n = drift.stats.samples
    if not measured.any() or n < 2:
        drift.underpowered = True
        drift.samples_needed = CLT_SAMPLES if measured.any() else None
        return
    typical_mean = float(np.median(drift.critical * drift.se_shift[measured]))
    typical_var = float(np.median(drift.critical * drift.se_log_ratio[measured]))
    worst = max(
        typical_mean / thresholds.mean_shift, typical_var / math.log(thresholds.variance_ratio)
    )
    # se scales as 1 / sqrt(N) (and t shrinks towards z: this slightly overestimates)
    needed = math.ceil(n * worst * worst) if worst > 1 else n
    if n < CLT_SAMPLES or worst > 1:
        drift.underpowered = True
        drift.samples_needed = max(needed, CLT_SAMPLES)


def compare(
    graph: ModelGraph,
    sites: Sequence[BnSite],
    measured: Mapping[int, ChannelStats],
    thresholds: Thresholds,
    skipped: Sequence[tuple[str, str]] = (),
    samples: int = 0,
) -> DriftProfile:
    layers = [
        layer_drift(site, measured[site.id], thresholds, len(sites))
        for site in sites
        if site.id in measured
    ]
    _mark_roots(graph, layers)
    return DriftProfile(layers, list(skipped), samples, thresholds)


def _mark_roots(graph: ModelGraph, layers: list[LayerDrift]) -> None:
    """One topological sweep: does a mismatching BN lie upstream, and which root first."""
    from bnlint.drift.sites import topological

    by_id = {layer.site.id: layer for layer in layers if layer.mismatch}
    if not by_id:
        return
    below: dict[int, bool] = {}  # a mismatching BN at or above this node's output
    origin: dict[int, int | None] = {}  # the first root at or above it
    for node in topological(graph):
        producers = graph.predecessors(node)
        upstream = any(below.get(p.id, False) for p in producers)
        first = min((o for p in producers if (o := origin.get(p.id)) is not None), default=None)
        layer = by_id.get(node.id)
        if layer is not None:
            layer.root = not upstream
            if layer.root:
                first = node.id if first is None else min(first, node.id)
            elif first is not None:
                layer.upstream_roots = [first]
        below[node.id] = upstream or layer is not None
        origin[node.id] = first
