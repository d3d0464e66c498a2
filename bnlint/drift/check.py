"""The drift check behind BN021: sample file -> model run -> per-layer verdicts -> cause."""

from __future__ import annotations

from pathlib import Path

from bnlint.drift.profile import DriftProfile, Thresholds
from bnlint.graph import ModelGraph


def drift_profile(
    graph: ModelGraph, sample_path: str | Path, thresholds: Thresholds
) -> DriftProfile:
    """Measure every analysed BN's input on the samples and compare (cached on the graph).

    Raises :class:`~bnlint.drift.samples.SampleDataError` for an unusable sample file and
    :class:`~bnlint.runtime.RunnerUnavailable` when the model cannot be run.
    """
    key = (str(Path(sample_path).absolute()), thresholds)
    cached = graph.cache.drift_profile
    if isinstance(cached, DriftProfile) and graph.cache.drift_key == key:
        return cached
    from bnlint.drift.collect import collector_for, measure
    from bnlint.drift.diagnose import diagnose
    from bnlint.drift.profile import compare
    from bnlint.drift.samples import SampleFile
    from bnlint.drift.sites import find_sites

    thresholds.check()
    samples = SampleFile(sample_path)
    sites = find_sites(graph)
    skipped = [(node.display_name, reason) for node, reason in sites.skipped]
    if not sites.analysed:
        profile = DriftProfile([], skipped, samples.count, thresholds)
        graph.cache.drift_profile, graph.cache.drift_key = profile, key
        return profile
    collector = collector_for(graph, sites.analysed)
    bound = samples.bind(collector.inputs)
    measured = measure(collector, samples, bound, sites.analysed)
    profile = compare(graph, sites.analysed, measured, thresholds, skipped, samples.count)
    profile.diagnosis = diagnose(graph, profile, collector, samples, bound)
    graph.cache.drift_profile, graph.cache.drift_key = profile, key
    return profile
