"""Signal over noise, end to end (issue 15, "Done when").

- a healthy ResNet-50 (the 53-BatchNorm layout, built here) is one summary line, exit 0,
  in the terminal and in every format a CI job reads;
- the bundled examples' findings are their defects, not fold notes;
- with a baseline, text, GitHub, GitLab and JUnit list only new findings (the summary
  counts the known ones; ``--show-known`` lists them and says which are known); HTML and
  Markdown put new findings first;
- JUnit bodies have real newlines, never a literal ``\\x0a``;
- a statistics cell whose channels hold NaN says how many, not only the finite range;
- an HTML report of thousands of findings stays under 1 MB and names what it leaves out.
"""

from __future__ import annotations

import importlib.util
import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

import bnlint
from bnlint.report import RenderOptions, extras_for, render
from tests.report_models import baselined_model, conv_bn_relu, deep_chain
from tests.zoo import onnx_zoo
from tests.zoo.onnx_builder import GraphBuilder

REPO = Path(__file__).resolve().parents[1]
MB = 1 << 20


@pytest.mark.slow
def test_a_healthy_resnet50_is_one_summary_line_and_exit_0(run_cli, tmp_path: Path) -> None:
    """Issue 15: 53 BN011 notes under "Passed … 53 findings" on a healthy ResNet-50."""
    from tests.zoo import fold_zoo

    model = tmp_path / "resnet50.onnx"  # torchvision's layout at width 8: 53 BatchNorms
    onnx.save(fold_zoo.export("resnet50", seed=0), model)
    (line,) = run_cli([model], exit_code=0).stdout.splitlines()
    assert re.fullmatch(
        r"All checks passed: 1 model, 53 BatchNorms, \d+ rules\. 53 of 53 BatchNorms can be "
        rf"folded: `bnlint fold {re.escape(str(model))} -o \S+`",
        line,
    ), line
    summary = run_cli([model, "--format", "json"], exit_code=0).json["summary"]
    assert (summary["findings"], summary["batchnorms"], summary["foldable"]) == (0, 53, 53)
    report = bnlint.lint(str(model))  # what a CI job reads, from the same lint
    assert render(report, "github", RenderOptions()) == f"{line}\n"
    assert json.loads(render(report, "gitlab", RenderOptions())) == []
    junit = ET.fromstring(render(report, "junit", RenderOptions()))
    assert (junit.get("failures"), junit.get("errors")) == ("0", "0")
    assert json.loads(render(report, "sarif", RenderOptions()))["runs"][0]["results"] == []


def test_the_demo_shows_its_defects_not_its_folds(run_cli, tmp_path: Path) -> None:
    """Issue 15: 16 of the demo's 28 findings were BN011 fold notes."""
    spec = importlib.util.spec_from_file_location(
        "build_examples", REPO / "examples" / "build_examples.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(str(tmp_path / "models"))
    data = run_cli([tmp_path / "models", "--format", "json"], exit_code=1).json
    codes = {f["code"] for model in data["models"] for f in model["findings"]}
    assert codes == {"BN003", "BN005", "BN006", "BN009", "BN014", "BN015"}
    severities = {f["severity"] for model in data["models"] for f in model["findings"]}
    assert severities <= {"error", "warning"}, "every default finding is a defect"
    healthy = next(
        m for m in data["models"] if m["path"].endswith("resnet_style_bn_preserved.onnx")
    )
    assert healthy["findings"] == [] and healthy["foldable"] == healthy["batchnorms"] > 0
    text = run_cli([tmp_path / "models"], exit_code=1).stdout.splitlines()
    assert re.fullmatch(r"\d+ of \d+ BatchNorms can be folded: `bnlint fold .*", text[-1])


@pytest.fixture
def baselined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli) -> Path:
    """``models/m.onnx``: a training-mode BN (BN003) and a Conv bias (BN007) accepted in
    ``baseline.json``; then a layer with a negative variance (BN006, BN007) added after
    them, so graph order puts the known findings first."""
    monkeypatch.chdir(tmp_path)

    baselined_model(tmp_path / "models", extra=False)
    run_cli(["models", "--write-baseline", "baseline.json", "-q"], exit_code=0)
    baselined_model(tmp_path / "models", extra=True)
    return tmp_path


KNOWN = {("BN003", "first"), ("BN007", "first.conv")}
NEW = {("BN006", "later"), ("BN007", "later.conv")}


def test_with_a_baseline_ci_formats_list_only_new_findings(run_cli, baselined: Path) -> None:
    """Issue 15: with --baseline, text and GitHub listed every finding again."""
    args = ["models", "--baseline", "baseline.json"]
    text = run_cli(args, exit_code=1).stdout
    listed = set(re.findall(r"^models/m\.onnx:(\S+) \[\w+\] (BN\d+)", text, re.M))
    assert {(code, node) for node, code in listed} == NEW
    assert re.search(
        r"^Found 2 new findings \(1 error, 1 info\) in 1 model \(.*\)\. 2 known findings in the "
        r"baseline not shown \(--show-known lists them\)\.$",
        text,
        re.M,
    ), text
    shown = run_cli([*args, "--show-known"], exit_code=1).stdout
    listed = re.findall(r"^models/m\.onnx:(\S+) \[\w+\] (BN\d+)( \(known\))?", shown, re.M)
    assert {(code, node) for node, code, known in listed if known} == KNOWN
    assert {(code, node) for node, code, known in listed if not known} == NEW
    assert "Found 2 new findings (1 error, 1 info) and 2 known findings in 1 model" in shown

    def github(extra: list[str]) -> set[tuple[str, str]]:
        out = run_cli([*args, "--format", "github", *extra], exit_code=1).stdout
        return set(re.findall(r"title=(BN\d+) [^:]*::([^:]+):", out))

    assert github([]) == NEW
    assert github(["--show-known"]) == NEW | KNOWN

    def gitlab(extra: list[str]) -> list[str]:
        out = run_cli([*args, "--format", "gitlab", *extra], exit_code=1).stdout
        return sorted(issue["check_name"] for issue in json.loads(out))

    assert gitlab([]) == ["BN006", "BN007"]
    assert gitlab(["--show-known"]) == ["BN003", "BN006", "BN007", "BN007"]

    def junit(extra: list[str]) -> set[str]:
        root = ET.fromstring(run_cli([*args, "--format", "junit", *extra], exit_code=1).stdout)
        return {case.get("name") for case in root.iter("testcase")}

    assert junit([]) == {
        "BN006 degenerate-running-variance at later",
        "BN007 redundant-bias-before-norm at later.conv",
    }
    assert "BN003 batchnorm-training-mode-at-inference at first" in junit(["--show-known"])


def test_with_a_baseline_html_and_markdown_put_new_findings_first(run_cli, baselined: Path) -> None:
    """Issue 15: HTML and Markdown tagged new findings but neither sorted nor filtered."""
    args = ["models", "--baseline", "baseline.json", "--report-html", "r.html"]
    markdown = run_cli([*args, "--format", "markdown"], exit_code=1).stdout
    new_part, _, known_part = markdown.partition("known finding")
    assert "| later |" in new_part and "| later.conv |" in new_part
    assert "| first |" not in new_part and "| first |" in known_part
    html = (baselined / "r.html").read_text()
    rows = re.findall(
        r'<tr class="finding[^"]*"[^>]*data-code="(BN\d+)"[^>]*data-state="(\w*)"', html
    )
    assert [state for _, state in rows] == ["new", "new", "known", "known"], rows
    assert '<input type="checkbox" id="filter-new">' in html


def test_junit_bodies_have_real_newlines(run_cli, tmp_path: Path) -> None:
    """Issue 15: JUnit XML held a literal ``\\x0a`` where newlines belong."""
    model = onnx_zoo.opset14_training_mode(tmp_path)
    out = run_cli([model, "--format", "junit"], exit_code=1).stdout
    assert "\\x0a" not in out and "&#10;" not in out
    body = next(ET.fromstring(out).iter("failure")).text
    assert body.splitlines()[1].startswith("Fix: put the model in eval mode")


def test_a_statistics_cell_with_nan_channels_says_so(tmp_path: Path) -> None:
    """Issue 15: a statistics cell whose channels hold NaN showed only the finite range."""
    g = GraphBuilder(opset=15)
    h = conv_bn_relu(g, g.input("x", [1, 3, 8, 8]), "ok", np.array([1.0, 2.0, 1.5, 0.5]))
    h = conv_bn_relu(g, h, "nan", np.array([1.0, np.nan, 2.0, np.nan]))
    path = onnx_zoo._save(g.model([h]), tmp_path, "nan_var")
    html = render(bnlint.lint(str(path), extras=extras_for(["html"])), "html", RenderOptions())
    table = html.split('<table class="bn">', 1)[1].split("</table>", 1)[0]
    row = next(r for r in table.split("<tr")[1:] if "<code>nan</code>" in r)
    assert "1 … 2; 2 of 4 NaN/Inf" in row and 'class="nonfinite"' in row
    assert row.startswith(' class="hot"'), "a layer with NaN statistics stands out"


def test_an_html_report_of_thousands_of_findings_stays_under_1_mb(tmp_path: Path) -> None:
    """Issue 15: a 300-layer model's report was 2 MB. 1,000 layers, each with a negative
    variance (BN006) and a Conv bias (BN007), every other one in training mode (BN003):
    2,500 findings, 1,000 layers whose statistics stand out."""
    path = deep_chain(tmp_path)
    report = bnlint.lint(str(path), extras=extras_for(["html"]))
    assert len(report.findings) == 2500
    html = render(report, "html", RenderOptions())
    assert len(html.encode()) < MB, len(html.encode())
    assert html.count('<tr class="finding') == 3, "one row per group"
    assert "900 more layers whose statistics stand out are not listed here" in html
    assert html.count(" more (the JSON and SARIF reports list every layer)") == 2


def test_a_report_of_200_models_stays_small_and_reaches_every_finding(tmp_path: Path) -> None:
    """Issue 15: a folder of 200 models with 6 findings each made 3.5 MB of HTML and 1,801
    terminal lines. The report-wide budget keeps the HTML under 1 MB with every finding
    still named in its model's section (or counted, with the pointer to the JSON); the
    terminal groups the same finding across models; JSON keeps one result per finding."""
    from tests.report_models import many_models

    folder = many_models(tmp_path / "models", 200)
    report = bnlint.lint(str(folder), extras=extras_for(["html"]))
    assert len(report.models) == 200 and len(report.findings) == 1200
    html = render(report, "html", RenderOptions())
    assert len(html.encode()) < MB, len(html.encode())
    plain = html.replace("<wbr>", "")
    sections = dict(
        re.findall(r'id="model-(\d+)">(.*?)(?=<section class="model"|<li |</ul>)', plain, re.S)
    )
    assert len(sections) == 200
    named = counted = 0
    for position, model in enumerate(report.models, start=1):
        section = sections[str(position)]
        assert Path(model.path).name in section
        if "<li" not in section and 'class="model-body"' not in section:  # a counted model
            counted += 1
            codes = Counter(finding.code for finding in model.findings)
            assert ", ".join(f"{code} ×{count}" for code, count in codes.items()) in section
            continue
        named += 1
        for finding in model.findings:
            assert finding.code in section and (finding.scope or finding.node) in section
    assert named >= 10 and counted, (named, counted)
    assert "counted by rule, not listed: the JSON report (<code>--format json</code>)" in html
    assert 'id="budget"' in html, "the budget says what it leaves out"
    assert "evidence-elsewhere" in html, "details past the budget point at the JSON"
    assert html.count('class="nb"') < 100, "neighbourhood graphs are budgeted report-wide"

    text = render(report, "text", RenderOptions())
    lines = text.splitlines()
    assert len(lines) < 40, len(lines)
    assert "(400 in all, 200 models)" in text, "the same finding on 200 models is one group"
    data = json.loads(render(report, "json", RenderOptions()))
    assert sum(len(model["findings"]) for model in data["models"]) == 1200
    quiet = render(report, "text", RenderOptions(quiet=True))
    assert len(quiet.splitlines()) == 1200, "-q keeps one line per finding"
