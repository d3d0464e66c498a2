"""The JSON contract (versioned; validated against bnlint/schemas/report.schema.json)."""

from __future__ import annotations

import json
from typing import Any

from bnlint._version import __version__
from bnlint.findings import Report
from bnlint.report import RenderOptions
from bnlint.report.summary import checked

# 1.1: optional top-level ``provenance``; 1.2: ``provenance.sample_data`` and
# ``recalibration``; 1.3: optional per-model ``verification``; 1.4: what was checked
# (``batchnorms``, ``foldable``, ``rules_run``) and non-finite evidence numbers as
# ``{"nonfinite": …}`` (docs/json-schema.md has the schema changelog).
SCHEMA_VERSION = "2.0"


def report_dict(report: Report) -> dict[str, Any]:
    seen = checked(report)
    data = {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "bnlint", "version": __version__},
        "models": [model.to_dict() for model in report.models],
        "summary": {
            "models": len(report.models),
            "unreadable": len(report.unreadable),
            "findings": len(report.findings),
            "by_severity": report.counts_by_severity(),
            "by_code": report.counts_by_code(),
            "batchnorms": seen.batchnorms,
            "foldable": seen.foldable if seen.fold_candidates else None,
            "rules_run": sorted(seen.rules),
        },
    }
    if report.baseline is not None:  # --baseline: findings carry baseline_state too
        data["baseline"] = report.baseline
    if report.provenance is not None:  # what a reviewer needs to reproduce the run
        data["provenance"] = report.provenance
    return data


def render(report: Report, options: RenderOptions) -> str:
    return json.dumps(report_dict(report), indent=2, allow_nan=False) + "\n"
