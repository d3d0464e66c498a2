"""BN021 findings (and BN905 notes) from a :class:`~bnlint.drift.profile.DriftProfile`."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from bnlint.drift.profile import CLT_SAMPLES, DriftProfile, LayerDrift, Thresholds
from bnlint.findings import Finding
from bnlint.rule import RuleContext

WORST_SHOWN = 2
RECALIBRATE = "bnlint recalibrate MODEL --sample-data FILE -o OUT"
STALE_FIX = (
    "fine-tune with BatchNorm in train mode, or re-estimate the statistics "
    f"({RECALIBRATE}) and check the accuracy: weights tuned against stale statistics may "
    "need a short fine-tune after"
)


def _rounded(values: np.ndarray) -> list[float | None]:
    return [float(f"{v:.4g}") if np.isfinite(v) else None for v in np.asarray(values)]


def _worst(layer: LayerDrift, thresholds: Thresholds) -> str:
    """The worst channels beyond a threshold, described with their numbers."""
    score = np.where(
        layer.beyond,
        np.maximum(
            np.abs(np.nan_to_num(layer.shift)) / thresholds.mean_shift,
            np.abs(np.nan_to_num(layer.log_ratio)) / math.log(thresholds.variance_ratio),
        ),
        -1.0,
    )
    order = [int(i) for i in np.argsort(-score) if score[i] >= 0][:WORST_SHOWN]
    parts = []
    for channel in order:
        bits = []
        if layer.mean_beyond[channel]:
            bits.append(f"mean shift {layer.shift[channel]:+.3g} σ")
        if layer.var_beyond[channel]:
            bits.append(f"variance ×{math.exp(layer.log_ratio[channel]):.3g}")
        parts.append(f"channel {channel}: {', '.join(bits)}")
    return "; ".join(parts)


def _evidence(layer: LayerDrift, profile: DriftProfile) -> dict[str, Any]:
    t = profile.thresholds
    return {
        "samples": layer.stats.samples,
        "values_per_sample": layer.stats.positions,
        "channels": int(layer.measured.sum()),
        "channels_beyond": int(layer.beyond.sum()),
        "channels_needed": layer.needed,
        "p_value": float(f"{layer.p_value:.3g}"),
        "thresholds": {
            "mean_shift": t.mean_shift,
            "variance_ratio": t.variance_ratio,
            "confidence": t.confidence,
            "min_fraction": t.min_fraction,
        },
        "first_mismatch": layer.root and layer is profile.first,
        "mean_shift": _rounded(layer.shift),
        "variance_ratio": _rounded(layer.ratio),
        "mean_shift_se": _rounded(layer.se_shift),
        "data_mean": _rounded(layer.stats.mean),
        "data_var": _rounded(layer.stats.var),
        "running_mean": _rounded(layer.site.mean),
        "running_var": _rounded(layer.site.var),
    }


def drift_findings(profile: DriftProfile, ctx: RuleContext) -> Iterator[Finding]:
    t = profile.thresholds
    first = profile.first
    names = {layer.site.id: layer.site.name for layer in profile.layers}
    for layer in profile.mismatches:
        worst = _worst(layer, t)
        head = (
            f"running statistics do not match the served data: {int(layer.beyond.sum())} of "
            f"{int(layer.measured.sum())} channels beyond a {t.mean_shift:g} σ mean shift or "
            f"×{t.variance_ratio:g} variance over {profile.samples} samples (worst: {worst})"
        )
        evidence = _evidence(layer, profile)
        if layer is first and profile.diagnosis is not None:
            diagnosis = profile.diagnosis
            evidence.update(diagnosis.evidence())
            message = f"{head}; {diagnosis.message()}"
            fix = (
                "make the serving preprocessing match training's"
                if diagnosis.cause == "preprocessing"
                else STALE_FIX
            )
        elif layer.root:
            message = f"{head}; a drift starts here too"
            fix = STALE_FIX
        else:
            origin = names.get(layer.upstream_roots[0]) if layer.upstream_roots else None
            where = f" at {origin}" if origin else ""
            evidence["downstream_of"] = origin
            message = f"{head}; it follows the first mismatch{where}"
            fix = "fix the first mismatching layer first; this one may follow"
        yield ctx.finding(layer.site.node, message, evidence=evidence, fix=fix)
    yield from _notes(profile, ctx)


def _notes(profile: DriftProfile, ctx: RuleContext) -> Iterator[Finding]:
    t = profile.thresholds
    weak = [layer for layer in profile.layers if layer.underpowered and not layer.mismatch]
    if weak:
        needed = [layer.samples_needed for layer in weak if layer.samples_needed]
        more = f"; about {max(needed)} samples would be" if needed else ""
        if profile.samples < CLT_SAMPLES:
            alpha = 1 - t.confidence
            gross = t.mean_shift + math.sqrt((1 / alpha - 1) * t.variance_ratio / profile.samples)
            ratio = t.variance_ratio / alpha
            why = (
                f"with fewer than {CLT_SAMPLES} samples only gross drift is tested (a mean "
                f"shift beyond {gross:.3g} σ or a variance beyond ×{ratio:g})"
            )
        else:
            why = f"e.g. {weak[0].site.name}: a mean shift of {2 * t.mean_shift:g} σ would not show"
        yield ctx.diagnostic(
            "BN905",
            None,
            f"BN021: {profile.samples} samples are too few to compare {len(weak)} of "
            f"{len(profile.layers)} BatchNorm layers confidently ({why}){more}",
            evidence={
                "samples": profile.samples,
                "layers": [layer.site.name for layer in weak],
                "samples_needed": max(needed) if needed else None,
            },
        )
    unusual = [
        (name, reason)
        for name, reason in profile.skipped
        if "training mode" not in reason and "no running statistics" not in reason
    ]
    if unusual:
        shown = "; ".join(f"{name}: {reason}" for name, reason in unusual[:3])
        yield ctx.diagnostic(
            "BN905",
            None,
            f"BN021 could not compare {len(unusual)} BatchNorm layer(s) with the data ({shown})",
            evidence={"skipped": [list(item) for item in unusual]},
        )
