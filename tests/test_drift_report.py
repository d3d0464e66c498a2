"""BN021 in every report format, the HTML drift chart, and the sample file's provenance."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from bnlint.report.drift_chart import MAX_PLOT, drift_view
from tests import drift_cases as dc
from tests.test_report_sarif import validate_sarif

HOSTILE = '<script>alert("bn")</script>\u202e'


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("drift-report")
    model = dc.LinearNet(0).model()
    model.graph.node[1].name = HOSTILE  # a model's strings are data, in every format
    path = folder / "scaled.onnx"
    onnx.save(model, str(path))
    samples = folder / "served.npz"
    np.savez(samples, x=dc.samples(120, 4) * 255)
    return path, samples


def test_html_draws_the_drift_chart_without_script_or_network(run_cli, served, tmp_path) -> None:
    model, samples = served
    report = tmp_path / "r.html"
    run_cli([model, "--sample-data", samples, "--report-html", report], exit_code=1)
    html = report.read_text(encoding="utf-8")
    start = html.index('<details class="drift"')
    chart = html[start : html.index("</details>", start)]
    assert '<svg class="drift-chart"' in chart and "<script" not in chart
    assert len(re.findall(r'<g class="dc-bad">', chart)) == 2  # both layers mismatch
    assert "drift starts:" in chart and "input-scale mismatch" in chart
    assert "#2 bn2 (depth 2): MISMATCH" in chart  # each layer's numbers in its tooltip
    assert HOSTILE not in html and "<script>alert" not in html
    assert "&lt;script&gt;alert(&#34;bn&#34;)&lt;/script&gt;\\u202e" in chart
    assert not re.search(r'(src|href)="(https?:)?//', chart)


def test_no_chart_without_sample_data(run_cli, served, tmp_path: Path) -> None:
    model, _ = served
    report = tmp_path / "r.html"
    run_cli([model, "--report-html", report])
    assert 'class="drift-chart"' not in report.read_text(encoding="utf-8")


def test_json_sarif_and_markdown_carry_bn021_and_the_sample_provenance(
    run_cli, served, tmp_path: Path
) -> None:
    model, samples = served
    data = run_cli([model, "--sample-data", samples, "--format", "json"], exit_code=1).json
    findings = [f for f in data["models"][0]["findings"] if f["code"] == "BN021"]
    assert [f["node"] for f in findings] == [HOSTILE, "bn2"]
    assert len(findings[0]["evidence"]["mean_shift"]) == 6  # per-channel arrays
    record = data["provenance"]["sample_data"]
    assert record["sha256"] == hashlib.sha256(samples.read_bytes()).hexdigest()
    assert record["samples"] == 120 and record["arrays"] == {
        "x": {"shape": [120, 3, 8, 8], "dtype": "float32"}
    }
    assert "BN021" in data["provenance"]["models"][0]["rules_run"]
    sarif = json.loads(run_cli([model, "--sample-data", samples, "--format", "sarif"], 1).stdout)
    validate_sarif(sarif)
    results = sarif["runs"][0]["results"]
    assert sum(1 for r in results if r["ruleId"] == "BN021") == 2
    markdown = run_cli([model, "--sample-data", samples, "--format", "markdown"], 1).stdout
    assert "BN021" in markdown and "| Sample data |" in markdown and "120 samples" in markdown
    assert "<script>" not in markdown


def test_without_sample_data_provenance_says_nothing_about_samples(run_cli, served) -> None:
    model, _ = served
    data = run_cli([model, "--format", "json"]).json
    assert "sample_data" not in data["provenance"]
    assert "BN021" not in data["provenance"]["models"][0]["rules_run"]


def _layers(count: int) -> dict:
    return {
        "samples": 64,
        "mean_shift": 0.5,
        "variance_ratio": 2.0,
        "cause": None,
        "layers": [
            {
                "name": f"layer{i}",
                "depth": i + 1,
                "channels": 8,
                "measured": 8,
                "beyond": 0,
                "mismatch": False,
                "first": False,
                "underpowered": False,
                "shift_median": 0.01,
                "shift_max": 0.05 if i else float("nan"),
                "ratio_min": 0.9,
                "ratio_median": 1.0,
                "ratio_max": 1.1 if i else 0.0,
            }
            for i in range(count)
        ],
    }


@pytest.mark.parametrize("count", [1, 53, 4000])
def test_chart_geometry_stays_bounded(count: int) -> None:
    view = drift_view(_layers(count))
    assert view["count"] == count and len(view["marks"]) == count
    assert view["width"] <= max(MAX_PLOT, 3 * count) + 100
    coordinates = [v for mark in view["marks"] for bar in mark["bars"] for v in bar]
    assert all(np.isfinite(coordinates)) and min(coordinates) >= 0
    assert max(c for c in coordinates) <= max(view["width"], view["height"])
