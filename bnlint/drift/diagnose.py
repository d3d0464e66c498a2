"""Why does the drift start where it starts?

At a BN with no analysed BN upstream, the only thing between the served data and the
running statistics is the preprocessing, so each usual preprocessing mistake is fitted
and re-tested against the running statistics with the same significance test:

* **channel permutation** (BGR for RGB): the samples with their channels permuted back;
* **scale** ``x_served = s * x_train`` (0-255 pixels for 0-1): ``s`` from the variance
  ratios (a scale multiplies every variance by ``s^2``, whatever the weights);
* **offset** ``x_served = x_train + o`` per input channel (a missing or different mean
  subtraction): ``o`` by weighted least squares on the channel means;
* **scale and offset** (a different mean/std normalisation).

When the path from the input to the BN is affine (convolutions, linear layers, average
pooling, padding, reshapes...), a correction's effect on the BN's input statistics is
exact and costs one small run: with ``f`` the per-channel mean of the BN input for one
input image, the corrected mean is ``f`` of the corrected mean image, scales divide the
variance by ``s^2`` and offsets leave it unchanged. Permutations change the variance in
ways no summary predicts, so their candidates are re-measured on the permuted samples (a
run pruned to the first BN). On a path that is not affine, only the re-measured
candidates (permutation, scale) are tried.

The simplest explanation that brings the layer back within the thresholds wins, in the
order above (a permutation has no continuous parameter; an offset has one per channel).
A mismatch that starts deeper, below BNs that match, points at statistics gone stale.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnlint.drift.collect import Collector, measure
from bnlint.drift.moments import ChannelStats
from bnlint.drift.paths import is_affine_path, reaches
from bnlint.drift.profile import DriftProfile, LayerDrift, layer_drift
from bnlint.drift.samples import SampleArray, SampleFile
from bnlint.graph import ModelGraph

MAX_PERMUTED_CHANNELS = 4  # 23 candidate permutations at most


@dataclass
class Explanation:
    kind: str  # permutation | scale | offset | normalisation
    fits: bool
    beyond: int  # channels still beyond a threshold after the correction
    channels: int
    params: dict[str, Any] = field(default_factory=dict)
    score: float = float("inf")  # mean squared residual effect, in threshold units

    def describe(self) -> str:
        p = self.params
        if self.kind == "permutation":
            order = p["order"]
            hint = " (e.g. BGR instead of RGB)" if order == [2, 1, 0] else ""
            return (
                "a channel-order mismatch: the served channels look like training channels "
                f"{order}{hint}"
            )
        if self.kind == "scale":
            return (
                f"an input-scale mismatch: the served inputs look ≈{_num(p['scale'])}× the "
                f"training inputs{_pixel_hint(p['scale'])}"
            )
        offsets = ", ".join(_num(o) for o in p["offset"])
        if self.kind == "offset":
            return (
                "an input-offset mismatch: the served inputs look shifted by "
                f"[{offsets}] per channel (a missing or different mean subtraction)"
            )
        return (
            "an input-normalisation mismatch: the served inputs look like the training "
            f"inputs × {_num(p['scale'])} + [{offsets}] (a different mean/std normalisation)"
        )


@dataclass
class Diagnosis:
    cause: str  # preprocessing | stale-statistics
    layer: LayerDrift
    explanation: Explanation | None = None
    tried: list[Explanation] = field(default_factory=list)
    note: str | None = None  # why no explanation could be fitted

    def evidence(self) -> dict[str, Any]:
        found: dict[str, Any] = {"cause": self.cause}
        if self.explanation is not None:
            found["explanation"] = self.explanation.kind
            found["explanation_params"] = self.explanation.params
        if self.tried:
            found["explanations_tried"] = {
                e.kind: {"fits": e.fits, "channels_still_beyond": e.beyond} for e in self.tried
            }
        if self.note:
            found["note"] = self.note
        return found

    def detail(self) -> str:
        """Where and why, completing "the drift starts here, ..." """
        if self.cause == "stale-statistics":
            return (
                "below BNs that match the data: its running statistics are stale (the weights "
                "feeding it changed after they were computed, e.g. fine-tuned in eval mode or "
                "with frozen BatchNorm)"
            )
        if self.explanation is not None and self.explanation.fits:
            return f"at the first BN: {self.explanation.describe()}"
        text = "at the first BN, so the preprocessing differs from training"
        if self.note:
            return f"{text} ({self.note})"
        if self.tried:
            best = min(self.tried, key=lambda e: e.beyond)
            return (
                f"{text}; no single channel permutation, scale or offset explains it "
                f"(closest: {best.kind}, {best.beyond} of {best.channels} channels still off)"
            )
        return text

    def message(self) -> str:
        return f"the drift starts here, {self.detail()}"


def _num(value: float) -> str:
    return f"{value:.3g}"


def _pixel_hint(scale: float) -> str:
    if 200 <= scale <= 300:
        return " (e.g. pixels in 0-255 where the model was trained on 0-1)"
    if 1 / 300 <= scale <= 1 / 200:
        return " (e.g. pixels in 0-1 where the model was trained on 0-255)"
    return ""


def diagnose(
    graph: ModelGraph,
    profile: DriftProfile,
    collector: Collector | None,
    samples: SampleFile | None,
    bound: Mapping[str, SampleArray] | None,
) -> Diagnosis | None:
    first = profile.first
    if first is None:
        return None
    if first.site.depth > 1:
        return Diagnosis("stale-statistics", first)
    diagnosis = Diagnosis("preprocessing", first)
    if collector is None or samples is None or bound is None:
        diagnosis.note = "the model could not be run again to test explanations"
        return diagnosis
    data_inputs = [name for name in bound if reaches(graph, first.site.node, name)]
    if len(data_inputs) != 1:
        diagnosis.note = "it depends on several inputs"
        return diagnosis
    _Fitter(graph, profile, collector, samples, bound, data_inputs[0]).run(diagnosis)
    return diagnosis


class _Fitter:
    def __init__(self, graph, profile, collector, samples, bound, name) -> None:
        self.graph = graph
        self.profile = profile
        self.collector = collector
        self.samples = samples
        self.bound = bound
        self.name = name
        self.layer: LayerDrift = profile.first
        self.site = self.layer.site
        self.layers = len(profile.layers)

    def run(self, diagnosis: Diagnosis) -> None:
        affine = is_affine_path(self.graph, self.site.node)
        mean_image = self.mean_image = self._mean_image()
        f = self._image_stats if affine else None
        if affine:
            self.base_w = f(mean_image[None])[1][0]
        tried = []
        channels = mean_image.shape[0] if mean_image.ndim >= 1 else 0
        if 1 < channels <= MAX_PERMUTED_CHANNELS and (affine or channels <= 3):
            tried += self._permutations(mean_image, f)
        tried.append(self._scale(f))
        if affine:
            tried += self._offsets(mean_image, f)
        diagnosis.tried = [e for e in tried if e is not None]
        diagnosis.explanation = self._choose(diagnosis.tried)
        if diagnosis.explanation is None and not affine:
            diagnosis.note = (
                "offsets were not tried: the path from the input to it is not linear"
                if diagnosis.tried
                else None
            )

    def _choose(self, tried: list[Explanation]) -> Explanation | None:
        """The simplest explanation that fits about as well as the best one.

        Several may bring the layer within the thresholds (they are deliberately lenient);
        the residual decides, and a simpler explanation (earlier in ``tried``) wins unless
        a more complex one leaves clearly less than it, beyond what sampling error alone
        leaves (``floor``)."""
        fitting = [e for e in tried if e.fits]
        if not fitting:
            return None
        t = self.profile.thresholds
        measured = self.layer.measured
        floor = float(
            np.mean(
                (self.layer.se_shift[measured] / t.mean_shift) ** 2
                + (self.layer.se_log_ratio[measured] / np.log(t.variance_ratio)) ** 2
            )
        )
        best = min(e.score for e in fitting)
        return next(e for e in fitting if e.score <= 1.5 * best + 4 * floor)

    # -- measuring ------------------------------------------------------------------------
    def _mean_image(self) -> np.ndarray:
        total, count = None, 0
        for _, feeds in self.samples.batches(self.bound, 64):
            values = feeds[self.name].astype(np.float64)
            total = values.sum(axis=0) if total is None else total + values.sum(axis=0)
            count += len(values)
        return total / max(count, 1)

    def _image_stats(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per image (rows of ``images``): the BN input's per-channel mean and its variance
        over positions."""
        batch = self.collector.fixed_batch or len(images)
        rows, spreads = [], []
        for start in range(0, len(images), batch):
            chunk = images[start : start + batch].astype(self.bound[self.name].dtype)
            real = len(chunk)
            if len(chunk) < batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - real, axis=0)])
            found = self.collector.summaries({self.name: chunk}, [self.site], {})[self.site.id]
            rows.append(found.a[:real])
            spreads.append(found.w[:real])
        return np.concatenate(rows), np.concatenate(spreads)

    def _remeasure(self, transform: Callable[[np.ndarray], np.ndarray]) -> ChannelStats:
        def rewrite(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return {**feeds, self.name: np.ascontiguousarray(transform(feeds[self.name]))}

        found = measure(self.collector, self.samples, self.bound, [self.site], transform=rewrite)
        return found[self.site.id]

    def _verdict(self, kind: str, stats: ChannelStats, params: dict) -> Explanation:
        thresholds = self.profile.thresholds
        drift = layer_drift(self.site, stats, thresholds, self.layers)
        beyond = int(drift.beyond.sum())
        measured = drift.measured
        score = (
            float(
                np.mean(
                    (drift.shift[measured] / thresholds.mean_shift) ** 2
                    + (drift.log_ratio[measured] / np.log(thresholds.variance_ratio)) ** 2
                )
            )
            if measured.any()
            else float("inf")
        )
        return Explanation(kind, not drift.mismatch, beyond, int(measured.sum()), params, score)

    def _corrected(self, image: np.ndarray, scale: float) -> ChannelStats:
        """The BN input's statistics had every sample been corrected by the affine map that
        takes the mean sample to ``image`` and divides deviations from it by ``scale``.

        On an affine path, exactly: the pooled variance is the mean over positions of the
        variance over samples (divided by ``scale**2``) plus the variance over positions of
        the mean map, which is the corrected mean image's own spread."""
        stats = self.layer.stats
        mean, spread = (values[0] for values in self._image_stats(image[None]))
        var = (stats.var - self.base_w) / scale**2 + spread
        return ChannelStats(
            stats.samples,
            stats.positions,
            mean,
            var,
            stats.se_mean / scale,
            stats.se_var / scale**2,
        )

    # -- the candidates ---------------------------------------------------------------------
    def _permutations(self, mean_image: np.ndarray, f) -> list[Explanation]:
        channels = mean_image.shape[0]
        orders = [p for p in itertools.permutations(range(channels)) if list(p) != sorted(p)]
        found: list[Explanation] = []
        best_screen: Explanation | None = None
        for order in orders:
            inverse = list(np.argsort(order))
            if f is not None:  # a cheap screen on the means, exact on an affine path
                # (only the means: permuting channels changes the variance across samples)
                drift = layer_drift(
                    self.site,
                    self._corrected(mean_image[inverse], 1.0),
                    self.profile.thresholds,
                    self.layers,
                )
                off = int(drift.mean_beyond.sum())
                screen = Explanation(
                    "permutation", False, off, int(drift.measured.sum()), {"order": list(order)}
                )
                if best_screen is None or off < best_screen.beyond:
                    best_screen = screen
                if off >= drift.needed:
                    continue
            stats = self._remeasure(lambda x, inv=inverse: x[:, inv])
            found.append(self._verdict("permutation", stats, {"order": list(order)}))
        if not found:
            return [best_screen] if best_screen is not None else []
        # one permutation entry: the best fit (several may fall within the thresholds)
        return [min(found, key=lambda e: (not e.fits, e.score))]

    def _scale_factor(self) -> float | None:
        """A scale multiplies every channel's variance by s^2: the precision-weighted mean
        of the log variance ratios estimates 2 ln s."""
        layer, site = self.layer, self.site
        usable = layer.measured & (site.var > 10 * site.eps) & (layer.se_log_ratio > 0)
        if not usable.any():
            return None
        weights = 1 / layer.se_log_ratio[usable] ** 2
        log_ratio = np.log(np.maximum(layer.stats.var[usable], 1e-300) / site.var[usable])
        scale = float(np.exp(0.5 * np.sum(weights * log_ratio) / np.sum(weights)))
        return scale if np.isfinite(scale) and scale > 0 else None

    def _scale(self, f) -> Explanation | None:
        scale = self._scale_factor()
        if scale is None:
            return None
        if f is None:
            stats = self._remeasure(lambda x: x / scale)
            return self._verdict("scale", stats, {"scale": scale})
        stats = self._corrected(self.mean_image / scale, scale)
        return self._verdict("scale", stats, {"scale": scale})

    def _offsets(self, mean_image: np.ndarray, f) -> list[Explanation]:
        shape = mean_image.shape
        channels = shape[0]
        basis_images = np.zeros((channels + 1, *shape))
        for k in range(channels):
            basis_images[k + 1, k] = 1.0
        values = f(basis_images)[0]
        y0, basis = values[0], (values[1:] - values[0]).T  # (C_out, C_in)
        stats, site = self.layer.stats, self.site
        weight = 1 / np.sqrt(site.var + site.eps)
        usable = self.layer.measured
        found = []
        for kind in ("offset", "normalisation"):
            scale = 1.0 if kind == "offset" else self._scale_factor()
            if scale is None:
                continue
            # corrected mean: y0 + (m - y0 - B o) / s  ->  B o ~ (m - y0) - s (mu - y0)
            target = (stats.mean - y0) - scale * (site.mean - y0)
            solution, *_ = np.linalg.lstsq(
                basis[usable] * weight[usable, None], target[usable] * weight[usable], rcond=None
            )
            offset = solution.reshape((channels,) + (1,) * (len(shape) - 1))
            params = {"offset": [float(o) for o in solution]}
            if kind == "normalisation":
                params["scale"] = scale
            corrected = self._corrected((mean_image - offset) / scale, scale)
            found.append(self._verdict(kind, corrected, params))
        return found
