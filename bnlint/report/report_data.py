"""Build the per-model data some reports need from the live graph (``ModelResult.report_data``).

The API calls :func:`build_report_data` only when a requested output format needs it (see
``EXTRAS_BY_FORMAT`` in :mod:`bnlint.report`), inside the process that linted the model, so
results stay small and picklable for ``-j N``. A failure here never fails the lint: it is
recorded in ``report_data.errors`` and the report renders without that part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from bnlint.findings import ModelResult
from bnlint.graph import ModelGraph


def _bn_table(graph: ModelGraph, result: ModelResult) -> Any:
    from bnlint.report.bn_table import bn_table

    return bn_table(graph, result.phase)


def _neighborhood(graph: ModelGraph, result: ModelResult) -> Any:
    from bnlint.report.neighborhood import neighborhoods

    return neighborhoods(graph, [f.order for f in result.findings if f.order >= 0])


def _drift(graph: ModelGraph, result: ModelResult) -> Any:
    from bnlint.report.drift_chart import drift_extra

    return drift_extra(graph)


BUILDERS: dict[str, Callable[[ModelGraph, ModelResult], Any]] = {
    "bn_table": _bn_table,
    "neighborhood": _neighborhood,
    "drift": _drift,
}


def build_report_data(graph: ModelGraph, result: ModelResult, names: Iterable[str]) -> None:
    for name in names:
        builder = BUILDERS.get(name)
        if builder is None:
            raise ValueError(f"unknown report extra {name!r}")
        try:
            setattr(result.report_data, name, builder(graph, result))
        except Exception as error:  # rendering data is optional; linting is not
            result.report_data.errors[name] = f"{type(error).__name__}: {error}"
