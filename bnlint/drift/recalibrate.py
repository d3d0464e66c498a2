"""Re-estimate every BatchNorm's running statistics on the served samples.

The estimate is the cumulative average over every sample and position (PyTorch's
``momentum=None``, AIMET's BN re-estimation), computed exactly: the pooled mean and the
pooled variance including the spread between batches (which an average of per-batch
variances misses), with Bessel's correction over all values as PyTorch stores it.

Layer by layer in dependency order: the BNs of depth 1 are measured first; each deeper
depth is measured with every BN above it already normalising with its new statistics,
so each layer's statistics describe the inputs it will actually see. A pass per depth,
each stopping at the deepest BN it measures (ONNX: a session pruned to what the pass
needs; torch: the forward pass stops at the last requested BN).

Refused, with the reason: models in training mode (their BNs normalise with batch
statistics, running statistics are not used), BNs whose parameters are graph inputs (a
runtime may replace them: BN020), and BNs that cannot be measured (inside If/Loop bodies,
unreadable or degenerate parameters): re-estimating only some layers would leave the
others stale against their new inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from bnlint.drift.collect import collector_for, measure
from bnlint.drift.profile import DriftProfile, Thresholds, compare
from bnlint.drift.samples import SampleFile
from bnlint.drift.sites import BnSite, Sites, find_sites
from bnlint.graph import ModelGraph


class RecalibrationError(Exception):
    """The model cannot be re-estimated; the message is one line for the user."""


@dataclass
class Recalibration:
    sites: list[BnSite]  # with their original statistics
    new: dict[int, tuple[np.ndarray, np.ndarray]]  # BN id -> (mean, unbiased variance)
    before: DriftProfile
    after: DriftProfile
    passes: int
    collector: object  # the collector that ran (its torch module holds the new statistics)

    def recalibrated_sites(self) -> list[BnSite]:
        return [
            replace(site, mean=self.new[site.id][0], var=self.new[site.id][1])
            for site in self.sites
        ]


def refusal(graph: ModelGraph, sites: Sites) -> str | None:
    """Why ``graph`` must not be re-estimated, or None."""
    bns = graph.nodes_of("batch_norm")
    if not bns:
        return "the model has no BatchNorm"
    if graph.facts.mode == "training" or any(bn.attrs.get("training") for bn in bns):
        trained = next((bn for bn in bns if bn.attrs.get("training")), bns[0])
        return (
            f"BatchNorm {trained.display_name!r} is in training mode: it normalises with batch "
            "statistics, so running statistics are not used (export or save the model in "
            "eval mode first)"
        )
    for bn in bns:
        for role in ("scale", "bias", "mean", "var"):
            name = bn.input(role)
            record = graph.tensors.get(name) if name else None
            if record is not None and record.is_graph_input:
                return (
                    f"the {role} of BatchNorm {bn.display_name!r} is a graph input ({name!r}): "
                    "a runtime may replace it, so statistics written into the file may never "
                    "be used (BN020); make it an initializer first"
                )
    for node, reason in sites.skipped:
        return f"BatchNorm {node.display_name!r} cannot be re-estimated: it is {reason}"
    return None


def recalibrate(graph: ModelGraph, samples: SampleFile, thresholds: Thresholds) -> Recalibration:
    """Raises RecalibrationError, SampleDataError or RunnerUnavailable."""
    sites = find_sites(graph)
    problem = refusal(graph, sites)
    if problem is not None:
        raise RecalibrationError(problem)
    analysed = sites.analysed
    collector = collector_for(graph, analysed, point="input")
    bound = samples.bind(collector.inputs)
    # Before: every BN with the statistics it has; its depth-1 results are already final.
    measured = measure(collector, samples, bound, analysed)
    before = compare(graph, analysed, measured, thresholds, samples=samples.count)
    from bnlint.drift.diagnose import diagnose

    before.diagnosis = diagnose(graph, before, collector, samples, bound)
    new: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    passes = 1
    for depth in sorted({site.depth for site in analysed}):
        wave = [site for site in analysed if site.depth == depth]
        if depth > 1:
            measured = measure(collector, samples, bound, wave, dict(new))
            passes += 1
        for site in wave:
            stats = measured[site.id]
            new[site.id] = (stats.mean, np.asarray(stats.unbiased_var))
    after_measured = measure(collector, samples, bound, analysed, dict(new))
    passes += 1
    updated = [replace(site, mean=new[site.id][0], var=new[site.id][1]) for site in analysed]
    after = compare(graph, updated, after_measured, thresholds, samples=samples.count)
    return Recalibration(analysed, new, before, after, passes, collector)
