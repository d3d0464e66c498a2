"""The HTML report: self-contained, escaped, complete without JavaScript, one section per model."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import bnlint
from bnlint._resources import data_dir
from bnlint.report import RenderOptions, extras_for, render
from bnlint.report.view import environment
from tests.report_models import XSS_NODE, build_models
from tests.zoo import onnx_zoo


class Page(HTMLParser):
    """Tags with their attributes and the text of <script> and <style> elements."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.raw: dict[str, list[str]] = {"script": [], "style": []}
        self._open: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {key: value or "" for key, value in attrs}))
        self._open = tag if tag in self.raw else None

    def handle_data(self, data: str) -> None:
        if self._open:
            self.raw[self._open].append(data)

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def find(self, tag: str, cls: str | None = None) -> list[dict[str, str]]:
        return [
            attrs
            for name, attrs in self.tags
            if name == tag and (cls is None or cls in attrs.get("class", "").split())
        ]


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> str:
    models = build_models(tmp_path_factory.mktemp("html"))
    report = bnlint.lint([str(p) for p in models], extras=extras_for(["html"]))
    return render(report, "html", RenderOptions(fail_on="warning"))


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_self_contained_under_a_csp_that_allows_only_its_own_code(report_html: str) -> None:
    page = Page(report_html)
    assert not [attrs for _, attrs in page.tags if "src" in attrs], "nothing is loaded"
    assert not page.find("link") and "@import" not in report_html
    assert not re.search(r"url\(", "".join(page.raw["style"]))
    external = [(t, a["href"]) for t, a in page.tags if a.get("href", "").startswith("http")]
    assert external and {tag for tag, _ in external} == {"a"}, "absolute URLs are links only"
    (csp,) = [
        a["content"] for a in page.find("meta") if a.get("http-equiv") == "Content-Security-Policy"
    ]
    names = [
        tag if attrs.get("http-equiv") != "Content-Security-Policy" else "csp"
        for tag, attrs in page.tags
    ]
    assert names.index("csp") < names.index("style") < names.index("script"), "CSP comes first"
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["default-src"] == "'none'"
    (script,), (style,) = page.raw["script"], page.raw["style"]
    assert directives["script-src"] == _sha256(script)
    assert directives["style-src"] == _sha256(style)


def test_model_strings_are_text(report_html: str) -> None:
    assert "<img" not in report_html
    assert "&lt;img src=x onerror=alert(1)&gt;" in report_html
    page = Page(report_html)
    assert XSS_NODE in [row.get("data-node") for row in Page(report_html).find("tr", "finding")]
    assert not any(XSS_NODE in text for text in page.raw["script"])


def test_every_finding_is_visible_without_javascript(report_html: str) -> None:
    page = Page(report_html)
    rows = page.find("tr", "finding")
    assert len(rows) >= 5 and not [row for row in rows if "hidden" in row]
    assert sum(int(row["data-count"]) for row in rows) >= 11, "each row is a group of findings"
    (controls,) = [attrs for tag, attrs in page.tags if attrs.get("id") == "controls"]
    assert "hidden" in controls, "the filter controls appear only when the script runs"
    assert "<noscript>" in report_html


def test_one_section_per_model_and_an_overview(report_html: str) -> None:
    page = Page(report_html)
    sections = page.find("section", "model")
    assert [s["id"] for s in sections] == [f"model-{i}" for i in range(1, 7)]
    assert "Could not read this model: not a valid ONNX model" in report_html
    overview_links = [a["href"] for a in page.find("a") if a.get("href", "").startswith("#model-")]
    assert overview_links == [f"#model-{i}" for i in range(1, 7)]


def test_each_finding_has_evidence_fix_docs_and_its_neighbourhood(report_html: str) -> None:
    row = report_html.split('data-node="head.bn"', 1)[1].split("</tr>", 1)[0]
    assert '<p class="fix">repair or re-estimate' in row
    assert "<dt>negative_variance</dt>" in row
    assert 'href="https://bnlint.github.io/bnlint/rules/BN006/"' in row
    svg = row.split('<svg class="nb"', 1)[1].split("</svg>", 1)[0]
    labels = re.findall(r'<text class="nb-(?:op|name)"[^>]*>([^<]*)</text>', svg)
    assert labels == ["Conv", "head.conv", "BatchNormalization", "head.bn", "Relu", "relu2"]
    shapes = re.findall(r'<text class="nb-shape"[^>]*>([^<]*)</text>', svg)
    assert shapes == ["1×8×8×8", "1×8×8×8"], "each edge carries its tensor's shape"
    article = report_html.split('id="rule-BN006"', 1)[1].split("</article>", 1)[0]
    assert "Why it matters" in article and "https://bnlint.github.io/bnlint/rules/BN006/" in article


def test_a_group_is_one_row_listing_every_layer(report_html: str) -> None:
    row = report_html.split('data-node="block0.bn"', 1)[1].split("</tr>", 1)[0]
    assert '<span class="more">+5 more</span>' in row
    members = re.findall(r"<li><code>([^<]*(?:<wbr>[^<]*)*)</code>", row.split("members", 1)[1])
    assert [m.replace("<wbr>", "") for m in members] == [f"block{i}.bn" for i in range(6)]


def test_rule_documentation_is_rendered_markdown(report_html: str) -> None:
    article = report_html.split('id="rule-BN003"', 1)[1].split("</article>", 1)[0]
    assert "<code>training_mode=1</code>" in article and "`" not in article


def test_bn_statistics_make_unhealthy_layers_stand_out(report_html: str) -> None:
    section = report_html.split('id="model-4"', 1)[1].split('id="model-5"', 1)[0]
    table = section.split('<table class="bn">', 1)[1].split("</table>", 1)[0]
    stem, mid, head = table.split("<tr")[2:]
    assert 'class="b h"' not in stem + mid and "40 … 40" in head
    assert "1 ≤ 0" in head, "the negative variance is red"
    assert "far from the other layers" in head, "a scale three decades from the others is red"
    assert head.startswith(' class="hot"') and "BN006" in head
    assert "BatchNorm statistics: 3 layers, <b>1 stands out</b>" in section


def test_a_layer_with_a_finding_but_healthy_statistics_does_not_stand_out(
    report_html: str,
) -> None:
    """ "Stand out" is a statistics anomaly: a training-mode BN with healthy statistics is
    named in the Findings column, not counted as an anomaly (issue 15)."""
    section = report_html.split('id="model-1"', 1)[1].split('id="model-2"', 1)[0]
    assert "BatchNorm statistics: 1 layer, none stands out" in section
    assert '<a href="#rule-BN003">BN003</a>' in section.split('<table class="bn">', 1)[1]


def test_fold_table_renders_when_verification_data_is_present(tmp_path: Path) -> None:
    model = onnx_zoo.resnet_opset15(tmp_path)
    report = bnlint.lint(str(model), extras=extras_for(["html"]))
    assert "Fold and verify" not in render(report, "html", RenderOptions())
    report.models[0].verification = {
        "bns": [
            {
                "bn": "stem.bn",
                "verdict": "folded-correctly",
                "into": "Conv stem.conv",
                "kind": "conv",
                "algebraic": {"error": 3.1e-7, "bound": 2e-6, "margin": 6.45},
            },
            {"bn": "<b>x</b>", "verdict": "folded-wrongly", "problem": "scale on axis 1"},
            {"bn": "block.bn2", "verdict": "unverified", "into": "Conv block.conv2"},
        ]
    }
    html = render(report, "html", RenderOptions()).replace("<wbr>", "")
    fold = html.split("Fold and verify", 1)[1].split("</table>", 1)[0]
    assert '<td class="good">folded-correctly</td>' in fold
    assert "3.1e-07" in fold and "2e-06" in fold
    assert '<td class="bad">folded-wrongly</td>' in fold and "&lt;b&gt;x&lt;/b&gt;" in fold
    assert "scale on axis 1" in fold and "Conv block.conv2" in fold
    assert '<td class="neutral">unverified</td>' in fold


def test_extras_are_computed_only_when_a_report_needs_them(tmp_path: Path) -> None:
    model = str(onnx_zoo.resnet_opset15(tmp_path))
    assert bnlint.lint(model).models[0].report_data.bn_table is None
    html_data = bnlint.lint(model, extras=extras_for(["json", "html"])).models[0].report_data
    assert [row["node"] for row in html_data.bn_table] == ["stem.bn", "block.bn1", "block.bn2"]
    assert set(html_data.neighborhood) == {f.order for f in bnlint.lint(model).models[0].findings}
    assert [row["fold"]["foldable"] for row in html_data.bn_table] == [True, True, True]


def test_cli_writes_the_html_report_beside_another_format(run_cli, tmp_path: Path) -> None:
    models = [onnx_zoo.resnet_opset15(tmp_path / f"m{i}") for i in range(10)]
    out = tmp_path / "report.html"
    result = run_cli([tmp_path, "--format", "json", "--report-html", out], exit_code=0)
    assert len(result.json["models"]) == len(models)
    html = out.read_text(encoding="utf-8")
    assert html.count('<section class="model"') == 10 and "BatchNorm statistics: 3 layers" in html
    assert out.stat().st_mode & 0o044 == 0o044, "a report artifact is readable by others"


def test_templates_never_mark_strings_safe() -> None:
    folder = data_dir("templates")
    for template in folder.iterdir():
        if template.suffix in (".j2", ".css", ".js"):
            text = template.read_text(encoding="utf-8")
            assert not re.search(r"\|\s*safe\b", text), f"{template.name} uses |safe"
            assert "autoescape false" not in text.replace(" ", " ").lower(), template.name
    # Markup is built in two places only, each escaping its text before adding tags (the
    # adversarial tests below): <wbr> break opportunities and rendered rule documentation.
    allowed = {"html.py", "html_markdown.py"}
    for module in (Path(bnlint.__file__).parent / "report").glob("*.py"):
        if module.name not in allowed:
            assert "Markup(" not in module.read_text(encoding="utf-8"), module.name


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert(1)</script> `<img src=x onerror=alert(1)>`",
        '[click](javascript:alert(1)) [x](https://a.example/"onmouseover="alert(1))',
        '**<b>bold</b>** *<i>x</i>* - <iframe src="https://evil.example">',
        "```\n</code></pre><script>alert(1)</script>\n```\n    <svg onload=alert(1)>",
        "[a](https://ok.example/path) \x1b[31m\u202e",
    ],
)
def test_rendered_markdown_adds_only_its_own_tags(text: str) -> None:
    from bnlint.report.html_markdown import markdown_html

    html = str(markdown_html(text))
    page = Page(f"<div>{html}</div>")
    tags = {tag for tag, _ in page.tags}
    assert tags <= {"div", "p", "ul", "li", "code", "pre", "strong", "em", "a"}, tags
    for tag, attrs in page.tags:
        assert set(attrs) <= ({"href", "rel"} if tag == "a" else set()), (tag, attrs)
        if tag == "a":
            assert re.fullmatch(r"https://[^\s\"'<>]+", attrs["href"]), attrs
    assert "\x1b" not in html and "\u202e" not in html


@pytest.mark.parametrize("name", [XSS_NODE, 'a.b/"c"<d>', "x\x1b[2Jy.z", "layer1.0.bn1"])
def test_break_opportunities_escape_first(name: str) -> None:
    from bnlint.report.html import break_opportunities

    html = str(break_opportunities(name))
    assert Page(f"<p>{html}</p>").tags == [("p", {})] + [("wbr", {})] * html.count("<wbr>")
    assert html.replace("<wbr>", "").count("<") == 0


def test_the_html_environment_escapes_and_refuses_undefined_names() -> None:
    from jinja2 import UndefinedError

    env = environment(autoescape=True)
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    with pytest.raises(UndefinedError):
        env.from_string("{{ missing }}").render()


def test_how_to_reproduce_names_the_command_inputs_and_versions(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hashlib
    import html as html_module
    import json

    folder = tmp_path / "a<b>c"  # the command line is user text: it must stay text
    model = onnx_zoo.resnet_opset15(folder)
    out = tmp_path / "report.html"
    monkeypatch.chdir(tmp_path)
    args = [f"a<b>c/{model.name}", "--phase", "inference", "--format", "json"]
    result = run_cli([*args, "--report-html", out], exit_code=0)
    page = out.read_text(encoding="utf-8")
    section = page.split('<section id="provenance">', 1)[1].split("</section>", 1)[0]
    assert "<b>" not in section and "a&lt;b&gt;c/resnet_opset15.onnx" in section
    (reproduce,) = re.findall(r'<pre class="mono" id="reproduce">(.*?)</pre>', section, re.S)
    steps = html_module.unescape(reproduce).splitlines()
    command = f"bnlint 'a<b>c/{model.name}' --phase inference --format json --report-html {out}"
    assert steps[-4:-2] == [f"cd {tmp_path}", command], "the exact command, from its folder"
    assert f"# {hashlib.sha256(model.read_bytes()).hexdigest()}  a<b>c/{model.name}" in steps
    assert any(step.startswith("pip install bnlint==") and "onnx==" in step for step in steps)
    assert steps[-1] == "python -m bnlint.reproduce report.json"
    (record,) = re.findall(r'<pre class="mono" id="provenance-json">(.*?)</pre>', section, re.S)
    embedded = json.loads(html_module.unescape(record))
    assert embedded["models"] == result.json["provenance"]["models"]
    assert "phase" in section and "command line" in section, "changed settings and their origin"
    assert 'href="#provenance">how to reproduce</a>' in page


def test_provenance_strings_from_models_and_paths_are_inert(tmp_path: Path) -> None:
    import html as html_module
    import json

    import onnx

    from tests.zoo.onnx_builder import GraphBuilder

    g = GraphBuilder(opset=15)
    x = g.input("img\x1b[31m\u202e<b>", [1, 3, 8, 8])
    y = g.relu(g.bn(g.conv(x, 4, name="conv", bias=False), name="bn"))
    folder = tmp_path / "evil\u202efdp.x\x1b[2J"
    folder.mkdir()
    onnx.save(g.model([y]), str(folder / "m.onnx"))
    report = bnlint.lint(str(folder / "m.onnx"))
    for fmt in ("html", "markdown"):
        text = render(report, fmt, RenderOptions())
        assert "\x1b" not in text and "\u202e" not in text, fmt
    page = render(report, "html", RenderOptions())
    assert "img\\x1b[31m\\u202e&lt;b&gt;: float32 [1×3×8×8]" in page, "shown, as escapes"
    assert "<b>" not in page.split('<section id="provenance">', 1)[1]
    (record,) = re.findall(r'<pre class="mono" id="provenance-json">(.*?)</pre>', page, re.S)
    assert json.loads(html_module.unescape(record)) == report.provenance
