"""Every output format carries the same findings in the same order (DESIGN: Output guarantees).

One set of models (several findings each, one rule repeated on six layers, hostile node
names, an unreadable file) is linted once and rendered in every format. The formats
machines read (JSON, SARIF, JUnit, GitLab) keep one result per layer: each is parsed back
into (model path, code, node) and compared with the JSON contract's list. The formats
people read (text, GitHub annotations, Markdown, HTML) show one entry per group (one
rule, one message template, one model): each is parsed back into (model path, code,
first node, layers) and all four must agree, with every finding in exactly one group.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from bnlint.config import FORMATS
from bnlint.report import REPORTERS
from bnlint.report.sanitize import printable
from tests.report_models import MARKUP_NODE, build_models

Row = tuple[str, str, str]  # resolved model path, code, node (module path or node name)


def _path(text: str) -> str:
    return str(Path(text).resolve())


def from_json(output: str) -> list[Row]:
    data = json.loads(output)
    return [
        (_path(model["path"]), f["code"], f["scope"] or f["node"] or "")
        for model in data["models"]
        for f in model["findings"]
    ]


def from_text(output: str, paths: list[str]) -> list[Row]:
    rows = []
    for line in output.splitlines():
        path = next((p for p in paths if line.startswith(p)), None)
        if path is None:
            continue
        rest = line[len(path) :]
        where, _, tail = rest.partition(" [")
        code = re.search(r"\] ([A-Z]{2,4}\d{3}) ", "[" + tail).group(1)
        rows.append((_path(path), code, where[1:] if where.startswith(":") else ""))
    return rows


def from_sarif(output: str) -> list[Row]:
    run = json.loads(output)["runs"][0]
    root = unquote(urlparse(run["originalUriBaseIds"]["SRCROOT"]["uri"]).path)
    rows = []
    for result in run["results"]:
        if result.get("baselineState") == "absent":
            continue
        location = result["locations"][0]
        artifact = location["physicalLocation"]["artifactLocation"]
        uri = unquote(urlparse(artifact["uri"]).path)
        path = str(Path(root) / uri) if artifact.get("uriBaseId") else uri
        logical = location.get("logicalLocations") or [{"name": ""}]
        rows.append((_path(path), result["ruleId"], logical[0]["name"]))
    return rows


def _github_unescape(text: str) -> str:
    return text.replace("%0A", "\n").replace("%0D", "\r").replace("%3A", ":").replace("%2C", ",")


def from_github(output: str) -> list[Row]:
    rows = []
    for line in output.splitlines():
        match = re.match(r"^::(error|warning|notice) file=([^,]*),title=([^:]*)::(.*)$", line)
        if match is None or "unreadable" in match.group(3):
            continue
        path = _github_unescape(match.group(2)).replace("%25", "%")
        code = _github_unescape(match.group(3)).split(" ")[0]
        message = _github_unescape(match.group(4)).replace("%25", "%")
        node = message.split(": ", 1)[0] if ": " in message.split("\n")[0] else ""
        rows.append((_path(path), code, node))
    return rows


def from_junit(output: str) -> list[Row]:
    rows = []
    for suite in ET.fromstring(output):
        for case in suite:
            if case.get("classname", "").startswith("bnlint.BN"):
                code, _, rest = case.get("name").partition(" ")
                node = rest.split(" at ", 1)[1]
                rows.append((_path(suite.get("name")), code, "" if node == "<model>" else node))
    return rows


def _md_unescape(cell: str) -> str:
    text = cell.strip().replace("<br>", "\n")
    text = re.sub(r"\\(.)", r"\1", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def from_markdown(output: str) -> list[Row]:
    rows = []
    for line in output.splitlines():
        cells = re.split(r"(?<!\\)\|", line)
        if len(cells) == 7 and re.match(r"^\s*\[[A-Z]{2,4}\d{3}\]", cells[2]):
            code = re.match(r"^\s*\[([A-Z]{2,4}\d{3})\]", cells[2]).group(1)
            rows.append((_path(_md_unescape(cells[3])), code, _md_unescape(cells[4])))
    return rows


class _FindingRows(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "tr" and "finding" in (values.get("class") or "").split():
            self.rows.append({k: v or "" for k, v in values.items()})


def from_html(output: str) -> list[Row]:
    parser = _FindingRows()
    parser.feed(output)
    return [(_path(r["data-model"]), r["data-code"], r["data-node"]) for r in parser.rows]


def from_gitlab(output: str) -> list[str]:
    return [
        issue["fingerprint"]
        for issue in json.loads(output)
        if issue["check_name"] != "unreadable-model"
    ]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return [str(path) for path in build_models(tmp_path_factory.mktemp("formats"))]


def test_every_registered_format_is_a_cli_choice() -> None:
    assert set(REPORTERS) == set(FORMATS)


Group = tuple[str, str, str, int]  # model path, code, first node, layers in the group


def groups_from_text(output: str, paths: list[str]) -> list[Group]:
    """A headline per group; ``  = also at a, b, +N more (K in all)`` after it if K > 1."""
    lines = output.splitlines()
    groups: list[Group] = []
    headlines = [i for i, line in enumerate(lines) if line.startswith(tuple(paths))]
    for (path, code, node), index in zip(from_text(output, paths), headlines, strict=True):
        follow = lines[index + 1] if index + 1 < len(lines) else ""
        found = re.match(r"^  = also at .* \((\d+) in all(?:, \d+ models)?\)$", follow)
        groups.append((path, code, node, int(found.group(1)) if found else 1))
    return groups


def _per_code(groups: list[Group]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for _, code, _, count in groups:
        counts[code] = counts.get(code, 0) + count
    return counts


def groups_from_github(output: str) -> list[Group]:
    groups = []
    for (path, code, node), line in zip(
        from_github(output),
        [
            line
            for line in output.splitlines()
            if line.startswith("::") and "unreadable" not in line
        ],
        strict=True,
    ):
        found = re.search(r"title=[^:]*\((\d+) layers\)::", line)
        groups.append((path, code, node, int(found.group(1)) if found else 1))
    return groups


def groups_from_markdown(output: str) -> list[Group]:
    groups = []
    for path, code, node in from_markdown(output):
        first, _, more = node.partition("\n+")
        count = 1 + int(more.split(" ", 1)[0]) if more else 1
        groups.append((path, code, first, count))
    return groups


def groups_from_html(output: str) -> list[Group]:
    parser = _FindingRows()
    parser.feed(output)
    return [
        (_path(r["data-model"]), r["data-code"], r["data-node"], int(r["data-count"]))
        for r in parser.rows
    ]


def test_one_run_every_format_same_findings_with_the_grouping(models: list[str]) -> None:
    """Rendered from one lint: per-layer formats list the JSON's findings in its order;
    text, GitHub, Markdown and HTML agree on the groups, which hold every finding once."""
    from bnlint.api import lint
    from bnlint.report import RenderOptions, extras_for, render
    from tests.helpers import validate_report

    report = lint(models, extras=extras_for(["html"]))
    outputs = {fmt: render(report, fmt, RenderOptions()) for fmt in FORMATS}
    validate_report(json.loads(outputs["json"]))
    expected = from_json(outputs["json"])
    assert len(expected) >= 11 and len({code for _, code, _ in expected}) >= 4
    assert any(node == MARKUP_NODE for _, _, node in expected), "the hostile model was linted"
    readable = [p for p in models if not p.endswith("corrupt.onnx")]
    assert [row[0] for row in expected] == sorted(
        (row[0] for row in expected), key=[_path(p) for p in readable].index
    ), "findings follow the input order"

    def printable_rows(rows: list[Row]) -> list[Row]:
        return [(path, code, printable(node)) for path, code, node in rows]

    assert from_sarif(outputs["sarif"]) == expected
    assert from_junit(outputs["junit"]) == printable_rows(expected)  # control chars escaped
    sarif_fingerprints = [
        r["partialFingerprints"]["bnlint/v1"]
        for r in json.loads(outputs["sarif"])["runs"][0]["results"]
    ]
    assert from_gitlab(outputs["gitlab"]) == sarif_fingerprints
    assert len(set(sarif_fingerprints)) == len(expected)

    html = groups_from_html(outputs["html"])
    printable_groups = [(p, c, printable(n), k) for p, c, n, k in html]
    # The terminal also groups one rule's same message across models (a folder of 200
    # models is not 200 repetitions): each text group is headed by an HTML group and
    # holds that rule's findings of the HTML groups it merges.
    text_groups = groups_from_text(outputs["text"], models)
    heads = [(p, c, n) for p, c, n, _ in printable_groups]
    assert [(p, c, n) for p, c, n, _ in text_groups] == [
        head for head in heads if head in {(p, c, n) for p, c, n, _ in text_groups}
    ]
    assert _per_code(text_groups) == _per_code(printable_groups)
    assert len(text_groups) < len(printable_groups), "BN003 in two models is one group"
    assert groups_from_github(outputs["github"]) == printable_groups
    assert groups_from_markdown(outputs["markdown"]) == html
    repeated = [(c, n, k) for p, c, n, k in html if p.endswith("repeated.onnx")]
    assert repeated == [("BN015", "block0.bn", 6), ("BN014", "block4.bn", 1)]
    hostile = [(c, k) for p, c, n, k in html if p.endswith("hostile.onnx")]
    assert hostile == [("BN003", 2)], "two layers, two names, one message template"
    per_code: dict[tuple[str, str], int] = {}
    for path, code, _ in expected:
        per_code[(path, code)] = per_code.get((path, code), 0) + 1
    grouped: dict[tuple[str, str], int] = {}
    for path, code, _, count in html:
        grouped[(path, code)] = grouped.get((path, code), 0) + count
    assert grouped == per_code, "every finding is in exactly one group"
    assert [(p, c) for p, c, _, _ in html] == list(dict.fromkeys((p, c) for p, c, _ in expected))


def test_every_format_reports_the_unreadable_model(run_cli, models: list[str]) -> None:
    corrupt = next(p for p in models if p.endswith("corrupt.onnx"))
    for fmt in FORMATS:
        result = run_cli([*models, "--format", fmt], exit_code=2)
        assert f"bnlint: error: {corrupt}: not a valid ONNX model" in result.stderr
        if fmt != "text":  # the terminal format says it on stderr only, as above
            assert "corrupt.onnx" in result.stdout, f"{fmt} omits the unreadable model"
            assert "not a valid ONNX model" in result.stdout, fmt


def test_parallel_jobs_give_the_same_reports(run_cli, models: list[str], tmp_path: Path) -> None:
    """-j 2 lints in worker processes; the HTML extras are computed there too."""
    serial_html, parallel_html = tmp_path / "serial.html", tmp_path / "parallel.html"
    serial = run_cli([*models, "--format", "json", "--report-html", serial_html], exit_code=2)
    parallel = run_cli(
        [*models, "--format", "json", "--report-html", parallel_html, "-j", "2"], exit_code=2
    )
    serial_provenance = serial.json.pop("provenance")
    parallel_provenance = parallel.json.pop("provenance")
    assert parallel.json == serial.json
    per_model = ("path", "status", "sha256", "size", "context", "rules_run")
    assert [{k: m.get(k) for k in per_model} for m in parallel_provenance["models"]] == [
        {k: m.get(k) for k in per_model} for m in serial_provenance["models"]
    ], "the workers hash each model and record what the rules saw, as the serial run does"
    assert parallel_provenance["invocation"]["argv"][-2:] == ["-j", "2"]
    html = parallel_html.read_text(encoding="utf-8")
    assert "BatchNorm statistics: 3 layers" in html and '<svg class="nb"' in html
    # the command lines and times differ: the header's meta line and the provenance section
    varying = re.compile(r'<p class="meta">.*?</p>|<section id="provenance">.*?</section>', re.S)
    assert varying.sub("", html) == varying.sub("", serial_html.read_text(encoding="utf-8"))
