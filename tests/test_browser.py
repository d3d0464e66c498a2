"""The HTML report in a real headless Chromium (Debian's package, driven over DevTools).

One report of a folder of models is opened from a file at desktop (1400 px) and phone
(360 px) widths: it must load nothing from the network and log no error; the severity
filter, the rule filter, the search box and sorting must change what is shown; a node
named like an HTML payload must appear as text with no dialog; at 360 px nothing may
scroll the page sideways, with a group's layers and a finding's details open; with
JavaScript off every finding must still be visible. A report with served samples shows
the drift chart at both widths. The screenshot of the page goes to docs/img/report.png
for the README when BNLINT_UPDATE_SCREENSHOT=1 (`make screenshot`); a normal run leaves
the checkout untouched.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chromium import Chromium, Page, sized_page
from tests.report_models import XSS_NODE, hostile_names

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "img" / "report.png"
VISIBLE_ROWS = (
    "Array.from(document.querySelectorAll('tr.finding'))"
    ".filter(r => r.getClientRects().length > 0).map(r => r.dataset.code + ' ' + r.dataset.node)"
)
VISIBLE_FINDINGS = (  # a row is a group: data-count findings
    "Array.from(document.querySelectorAll('tr.finding'))"
    ".filter(r => r.getClientRects().length > 0).reduce((n, r) => n + Number(r.dataset.count), 0)"
)
SIDEWAYS = "document.documentElement.scrollWidth - document.documentElement.clientWidth"

pytestmark = pytest.mark.browser


def _example_models(folder: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "build_examples", REPO / "examples" / "build_examples.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(str(folder))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    """A report of the example models plus one with hostile names, written by the CLI."""
    from click.testing import CliRunner

    from bnlint.cli import main

    work = tmp_path_factory.mktemp("browser")
    _example_models(work / "models")
    hostile_names(work / "models" / "zz_hostile")
    argv = ["models", "--report-html", "report.html", "--format", "json"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)  # relative paths, as a reviewer's checkout would show them
        patch.setattr(sys, "argv", ["bnlint", *argv])  # the report shows its command line
        result = CliRunner().invoke(main, argv, catch_exceptions=False)
    data = json.loads(result.stdout)
    assert result.exit_code == 1, result.stderr
    findings = [f for model in data["models"] for f in model["findings"]]
    return work / "report.html", findings


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    chromium = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield chromium
    finally:
        chromium.close()


def test_report_in_a_real_browser(browser: Chromium, report: tuple[Path, list[dict]]) -> None:
    path, findings = report
    page = sized_page(browser, 1400)
    url = path.as_uri()
    page.navigate(url)

    requests = [event["request"]["url"] for event in page.events("Network.requestWillBeSent")]
    assert requests == [url], "the report loads nothing but itself"
    all_rows = page.evaluate(VISIBLE_ROWS)
    assert page.evaluate(VISIBLE_FINDINGS) == len(findings) >= 12
    assert len(all_rows) < len(findings), "repeated findings are grouped"
    assert page.evaluate("document.getElementById('shown').textContent") == (
        f"Showing {len(findings)} of {len(findings)} findings"
    )
    assert page.evaluate(SIDEWAYS) <= 0

    page.click("input[data-severity='warning']")  # a real mouse click on the checkbox
    assert page.evaluate(VISIBLE_FINDINGS) == sum(f["severity"] != "warning" for f in findings) > 0
    page.click("input[data-severity='warning']")

    page.evaluate(
        "(() => { const s = document.getElementById('filter-code'); s.value = 'BN003';"
        " s.dispatchEvent(new Event('change')); })()"
    )
    assert {row.split(" ")[0] for row in page.evaluate(VISIBLE_ROWS)} == {"BN003"}
    page.evaluate(
        "(() => { const s = document.getElementById('filter-code'); s.value = '';"
        " s.dispatchEvent(new Event('change')); })()"
    )

    page.type("#filter-search", "onerror")
    assert page.evaluate(VISIBLE_ROWS) == [
        f"{f['code']} {f['node']}" for f in findings if f["node"] == XSS_NODE
    ]
    page.evaluate(
        "(() => { const s = document.getElementById('filter-search'); s.value = '';"
        " s.dispatchEvent(new Event('input')); })()"
    )
    assert page.evaluate(VISIBLE_FINDINGS) == len(findings)

    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate(
        f"Array.from(document.querySelectorAll('td.node code')).some(c => c.textContent === {json.dumps(XSS_NODE)})"
    )
    assert not page.events("Page.javascriptDialogOpening"), "no dialog fired"

    table = "document.querySelector('#model-3 table.findings')"  # keras_momentum_and_odd_eps
    codes = f"Array.from({table}.querySelectorAll('tr.finding')).map(r => r.dataset.code)"
    before = page.evaluate(codes)
    page.click("#model-3 table.findings th[data-key='data-code'] button")
    assert page.evaluate(codes) == sorted(before) != before, "sorted by rule"
    page.click("#model-3 table.findings th[data-key='data-code'] button")
    assert page.evaluate(codes) == sorted(before, reverse=True)

    docs = "document.getElementById('rule-BN003')"
    assert page.evaluate(f"{docs}.querySelectorAll('.doc code').length") > 0
    assert "`" not in page.evaluate(f"{docs}.innerText"), "rule docs are rendered Markdown"
    assert (
        page.evaluate("getComputedStyle(document.querySelector('td.node code')).overflowWrap")
        == "break-word"
    ), "names wrap at their separators, not mid-word"

    errors = [
        e["entry"]["text"] for e in page.events("Log.entryAdded") if e["entry"]["level"] == "error"
    ]
    errors += [
        e["args"]
        for e in page.events("Runtime.consoleAPICalled")
        if e["type"] in ("error", "assert")
    ]
    errors += [e["exceptionDetails"] for e in page.events("Runtime.exceptionThrown")]
    assert errors == [], errors

    page = sized_page(browser, 1400)
    page.navigate(url)  # a fresh view for people: the first error's details open
    page.evaluate(
        "document.querySelector('tr.finding.sev-error details').open = true; window.scrollTo(0, 0)"
    )
    png = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) < 300_000, len(png)
    if os.environ.get("BNLINT_UPDATE_SCREENSHOT") == "1":
        SCREENSHOT.write_bytes(png)


def test_report_at_phone_width(browser: Chromium, report: tuple[Path, list[dict]]) -> None:
    """360 px: findings become cards, wide tables scroll inside themselves; the page never
    scrolls sideways, with a group's layers and every finding's details open."""
    path, findings = report
    page = sized_page(browser, 360)
    page.navigate(path.as_uri())
    assert page.evaluate("window.innerWidth") == 360
    assert page.evaluate(VISIBLE_FINDINGS) == len(findings)
    assert page.evaluate(SIDEWAYS) <= 0
    page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
    assert page.evaluate(SIDEWAYS) <= 0, page.evaluate(
        "Array.from(document.querySelectorAll('body *')).filter(e =>"
        " e.getBoundingClientRect().right > window.innerWidth + 1).slice(0, 5)"
        ".map(e => e.tagName + '.' + e.className)"
    )
    widest = page.evaluate(
        "Math.max(...Array.from(document.querySelectorAll('tr.finding')).map("
        "r => r.getBoundingClientRect().right))"
    )
    assert widest <= 360, "every finding card fits the screen"
    assert not page.events("Runtime.exceptionThrown")


def test_drift_chart_at_desktop_and_phone_widths(
    browser: Chromium, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The sample-data engineer's drift chart (BN021) survives the layout: drawn, inside
    the viewport at 1400 and 360 px."""
    import numpy as np
    from click.testing import CliRunner

    from bnlint.cli import main

    work = tmp_path_factory.mktemp("drift-browser")
    _example_models(work / "models")
    samples = work / "served.npz"
    rng = np.random.default_rng(0)
    np.savez(samples, image=rng.normal(3.0, 4.0, (64, 3, 32, 32)).astype(np.float32))
    html = work / "drift.html"
    model = work / "models" / "resnet_style_bn_preserved.onnx"
    args = [str(model), "--sample-data", str(samples), "--report-html", str(html), "-q"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 1, result.stderr  # BN021: the statistics do not match
    for width in (1400, 360):
        page = sized_page(browser, width)
        page.navigate(html.as_uri())
        box = page.evaluate(
            "(() => { const r = document.querySelector('svg.drift-chart')"
            ".getBoundingClientRect(); return [r.left, r.right, r.height]; })()"
        )
        assert box[0] >= 0 and box[1] <= width and box[2] > 50, (width, box)
        assert page.evaluate("document.querySelectorAll('svg.drift-chart .dc-bad').length") > 0
        assert page.evaluate(SIDEWAYS) <= 0, width


def test_every_finding_is_visible_with_javascript_off(
    browser: Chromium, report: tuple[Path, list[dict]]
) -> None:
    path, findings = report
    page = Page(browser)
    page.call("Emulation.setScriptExecutionDisabled", value=True)
    page.navigate(path.as_uri())
    assert page.evaluate(VISIBLE_FINDINGS) == len(findings)
    assert page.evaluate("document.getElementById('controls').getClientRects().length") == 0
    assert page.evaluate("document.getElementById('shown').textContent") == ""


FOLD_ROWS = (
    "Array.from(document.querySelectorAll('#model-{index} table.fold tbody tr'))"
    ".filter(r => r.getClientRects().length > 0)"
    ".map(r => [r.cells[0].textContent, r.cells[1].textContent, r.cells[1].className,"
    " getComputedStyle(r.cells[1]).color])"
)


def test_verify_report_shows_the_fold_table(
    browser: Chromium, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`--verify --report-html` renders one row per BatchNorm of the verification section
    (docs/reports.md): the verdict of each, green when folded correctly, grey when not
    folded, at desktop and phone widths, and with JavaScript off."""
    from click.testing import CliRunner

    from bnlint.cli import main
    from tests.zoo import onnx_zoo
    from tests.zoo.onnx_builder import GraphBuilder

    work = tmp_path_factory.mktemp("fold-browser")
    onnx_zoo.resnet_opset15(work / "models")  # three BNs, each folds into its conv
    g = GraphBuilder(opset=15)
    h = g.relu(g.bn(g.conv(g.input("x", [2, 3, 8, 8]), 4, name="conv"), name="folds"))
    onnx_zoo._save(g.model([g.bn(h, name="after_relu")]), work / "models", "mixed")
    html = work / "verify.html"
    args = ["models", "--verify", "--report-html", str(html), "--format", "json"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    models = json.loads(result.stdout)["models"]
    expected = {
        index + 1: [(bn["bn"], bn["verdict"]) for bn in model["verification"]["bns"]]
        for index, model in enumerate(models)
    }
    verdicts = {verdict for rows in expected.values() for _, verdict in rows}
    assert verdicts == {"folded-correctly", "not-folded"}, expected
    assert sum(len(rows) for rows in expected.values()) == 5

    colours = {}
    for width, scripts in ((1400, True), (360, True), (1400, False)):
        page = sized_page(browser, width)
        if not scripts:
            page.call("Emulation.setScriptExecutionDisabled", value=True)
        page.navigate(html.as_uri())
        for index, rows in expected.items():
            shown = page.evaluate(FOLD_ROWS.format(index=index))
            assert [(name, verdict) for name, verdict, _, _ in shown] == rows, (width, index)
            for _, verdict, cls, colour in shown:
                colours.setdefault((verdict, cls), set()).add(colour)
        assert page.evaluate(SIDEWAYS) <= 0, width
    good, neutral = ("folded-correctly", "good"), ("not-folded", "neutral")
    assert set(colours) == {good, neutral}
    assert colours[good] == {"rgb(26, 127, 55)"}, "folded correctly is green (--good)"
    assert colours[neutral] == {"rgb(89, 99, 110)"}, "not folded is grey (--muted)"


def test_new_only_filter_and_a_report_of_thousands_of_findings(
    browser: Chromium, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """With a baseline the new findings come first and "new only" hides the known ones (a
    real click, both widths); a report of 2,500 findings on 1,000 layers is no taller than
    the same report of 100 layers, and neither scrolls sideways."""
    from click.testing import CliRunner

    from bnlint.cli import main
    from tests.report_models import baselined_model, deep_chain

    work = tmp_path_factory.mktemp("baseline-browser")
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        baselined_model(work / "models", extra=False)
        runner.invoke(main, ["models", "--write-baseline", "b.json", "-q"])
        baselined_model(work / "models", extra=True)
        args = ["models", "--baseline", "b.json", "--report-html", "new.html", "-q"]
        assert runner.invoke(main, args).exit_code == 1
        deep_chain(work / "big")  # 1,000 layers, 2,500 findings
        assert runner.invoke(main, ["big", "--report-html", "big.html", "-q"]).exit_code == 1
        deep_chain(work / "small", 100)  # the same, 100 layers
        assert runner.invoke(main, ["small", "--report-html", "small.html", "-q"]).exit_code == 1
    states = (
        "Array.from(document.querySelectorAll('tr.finding'))"
        ".filter(r => r.getClientRects().length > 0).map(r => r.dataset.state)"
    )
    for width in (1400, 360):
        page = sized_page(browser, width)
        page.navigate((work / "new.html").as_uri())
        assert page.evaluate(states) == ["new", "new", "known", "known"], width
        page.click("#filter-new")
        assert page.evaluate(states) == ["new", "new"], width
        assert page.evaluate(SIDEWAYS) <= 0, width

        heights = {}
        for name, findings in (("small", 250), ("big", 2500)):
            page = sized_page(browser, width)
            page.navigate((work / f"{name}.html").as_uri())
            assert page.evaluate(VISIBLE_FINDINGS) == findings
            assert page.evaluate("document.querySelectorAll('tr.finding').length") == 3
            heights[name] = page.evaluate("document.documentElement.scrollHeight")
            assert page.evaluate(SIDEWAYS) <= 0, width
            assert not page.events("Runtime.exceptionThrown")
        # Three groups either way: the page does not grow with the model (issue 15: a
        # 300-layer model made 48,000 px); digits of layer names may wrap a line more.
        assert heights["big"] <= heights["small"] * 1.05, (width, heights)


def test_a_report_of_200_models_is_as_tall_as_one_of_40(
    browser: Chromium, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Issue 15: 200 models with 6 findings each made a page 154,000 px tall. Past the
    first sections the models are collapsed, so 200 models are no taller than 40 at both
    widths and nothing scrolls sideways; a search naming a collapsed model opens its
    section and shows its findings, and clearing it closes the section again. With
    JavaScript off the collapsed sections are still in the page (find-in-page opens them)."""
    from click.testing import CliRunner

    from bnlint.cli import main
    from tests.report_models import many_models

    work = tmp_path_factory.mktemp("many-models")
    runner = CliRunner()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        for count in (40, 200):
            many_models(work / f"m{count}", count)
            args = [f"m{count}", "--report-html", f"m{count}.html", "-q"]
            assert runner.invoke(main, args).exit_code == 1
    shown = "document.getElementById({anchor!r}).querySelector('table').checkVisibility()"
    for width in (1400, 360):
        heights = {}
        for count in (40, 200):
            page = sized_page(browser, width)
            page.navigate((work / f"m{count}.html").as_uri())
            heights[count] = page.evaluate("document.documentElement.scrollHeight")
            assert page.evaluate(SIDEWAYS) <= 0, (width, count)
            assert not page.events("Runtime.exceptionThrown")
        assert heights[200] <= heights[40] * 1.05, (width, heights)

        # The last collapsed model that still has rows: a search for its file opens it.
        anchor, model = page.evaluate(
            "(() => { const rows = document.querySelectorAll('#more-models tr.finding');"
            " const row = rows[rows.length - 1];"
            " return [row.closest('section').id, row.dataset.model]; })()"
        )
        assert page.evaluate(shown.format(anchor=anchor)) is False
        page.type("#filter-search", Path(model).name)
        assert page.evaluate(VISIBLE_FINDINGS) == 6, width
        assert page.evaluate(shown.format(anchor=anchor)) is True
        assert page.evaluate(SIDEWAYS) <= 0, width
        page.evaluate(
            "(() => { const s = document.getElementById('filter-search'); s.value = '';"
            " s.dispatchEvent(new Event('input')); })()"
        )
        assert page.evaluate(shown.format(anchor=anchor)) is False
        assert page.evaluate("document.documentElement.scrollHeight") == heights[200]

    for width in (1400, 780, 360):  # JavaScript off: the same page, collapsed the same way
        page = sized_page(browser, width)
        page.call("Emulation.setScriptExecutionDisabled", value=True)
        page.navigate((work / "m200.html").as_uri())
        assert page.evaluate("document.querySelectorAll('tr.finding').length") >= 200
        assert page.evaluate("document.documentElement.scrollHeight") <= heights[200] * 1.05
        assert page.evaluate(SIDEWAYS) <= 0, width
