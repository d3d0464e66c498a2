"""Run a model over the sample file and accumulate every BN input's statistics.

A *collector* runs one batch and returns, for each requested BN, the per-sample channel
summaries of its input (:func:`bnlint.drift.moments.row_summaries`). Two exist: ONNX
Runtime (:mod:`bnlint.drift.collect_onnx`) and PyTorch (:mod:`bnlint.drift.collect_torch`).
``overrides`` replaces running statistics for the run (re-estimation measures each depth
with the statistics already re-estimated above it).

:func:`measure` streams the sample file through a collector batch by batch into
:class:`~bnlint.drift.moments.SampleMoments`: memory is one batch of samples and
activations plus a few arrays per channel, whatever the number of samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from bnlint.drift.moments import ChannelStats, SampleMoments
from bnlint.drift.samples import InputSpec, SampleArray, SampleFile
from bnlint.drift.sites import BnSite
from bnlint.drift.summaries import Overrides, Summaries
from bnlint.graph import ModelGraph
from bnlint.runtime import RunnerUnavailable

BATCH_INPUT_BYTES = 8 << 20  # input bytes per batch; activations are a multiple of this
MAX_BATCH = 32


class Collector(Protocol):
    inputs: Sequence[InputSpec]
    fixed_batch: int | None  # the model only accepts batches of this size

    def summaries(
        self, feeds: Mapping[str, np.ndarray], sites: Sequence[BnSite], overrides: Overrides
    ) -> Summaries: ...


def collector_for(
    graph: ModelGraph, sites: Sequence[BnSite], *, point: str = "centred"
) -> Collector:
    """The collector for ``graph``'s front end; RunnerUnavailable says why there is none.

    ``point`` (ONNX): where statistics are taken, see :mod:`bnlint.drift.collect_onnx`;
    ``"input"`` lets a run replace running statistics (re-estimation)."""
    if graph.source.onnx_model is not None:
        from bnlint.drift.collect_onnx import OnnxCollector

        return OnnxCollector(graph, sites, point=point)
    if graph.source.torch_module is not None:
        from bnlint.drift.collect_torch import TorchCollector

        return TorchCollector(graph, sites)
    hint = ""
    if graph.facts.format in ("pt2", "torchscript"):
        hint = " (pass --trust-model-code to run it with torch)"
    raise RunnerUnavailable(f"this {graph.facts.format} model cannot be run{hint}")


def batch_size(collector: Collector, bound: Mapping[str, SampleArray]) -> int:
    if collector.fixed_batch is not None:
        return collector.fixed_batch
    per_sample = sum(array.sample_bytes for array in bound.values())
    return int(max(1, min(MAX_BATCH, BATCH_INPUT_BYTES // max(per_sample, 1))))


def measure(
    collector: Collector,
    samples: SampleFile,
    bound: Mapping[str, SampleArray],
    sites: Sequence[BnSite],
    overrides: Overrides | None = None,
    *,
    transform=None,
) -> dict[int, ChannelStats]:
    """One pass over the samples: each site's pooled input statistics.

    ``transform`` (feeds -> feeds) rewrites each batch first, e.g. a candidate correction
    of the preprocessing.
    """
    batch = batch_size(collector, bound)
    moments: dict[int, SampleMoments] = {}
    for _, feeds in samples.batches(bound, batch):
        rows = len(next(iter(feeds.values())))
        if transform is not None:
            feeds = transform(feeds)
        if collector.fixed_batch is not None and rows < collector.fixed_batch:
            feeds = {name: _pad(values, collector.fixed_batch) for name, values in feeds.items()}
        found = collector.summaries(feeds, sites, overrides or {})
        for site in sites:
            stats = found[site.id]
            acc = moments.get(site.id)
            if acc is None:
                acc = moments[site.id] = SampleMoments(site.channels, stats.positions)
            acc.update(stats.a[:rows], stats.w[:rows])
    return {site_id: acc.result() for site_id, acc in moments.items()}


def _pad(values: np.ndarray, rows: int) -> np.ndarray:
    """Fill a fixed-size batch by repeating the last sample; the extra rows are dropped."""
    extra = np.repeat(values[-1:], rows - len(values), axis=0)
    return np.concatenate([values, extra])
