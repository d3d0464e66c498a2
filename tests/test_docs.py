"""Generated documentation is checked in and must match the code; the site must build."""

from __future__ import annotations

import doctest
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from bnlint.docgen import (
    TABLE_END,
    TABLE_START,
    docs_pages,
    main,
    replace_table,
    rules_table,
    stale_pages,
    write_pages,
)
from bnlint.engine.registry import REDIRECTS, load_rules
from bnlint.rule import DEFAULT_DOCS_URL
from bnlint.toml_writer import toml_literal

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"


def _mkdocs_config() -> dict:
    # mkdocs.yml is plain YAML (no !!python tags), so safe_load reads it.
    return yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))


def test_readme_rule_table_is_current() -> None:
    text = README.read_text()
    assert replace_table(text, rules_table()) == text, (
        "README rule table is stale: run `make readme`"
    )


def test_rule_table_lists_every_builtin_rule_once() -> None:
    text = README.read_text()
    table = text[text.index(TABLE_START) : text.index(TABLE_END)]
    for rule in load_rules(plugins=False):
        assert table.count(f"[{rule.code}]") == 1
        assert f"`{rule.name}`" in table


def test_generated_pages_are_current() -> None:
    stale = stale_pages(DOCS)
    assert not stale, "generated docs are stale: run `make docs`\n" + "\n".join(stale)


def test_a_stale_or_leftover_page_is_detected(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    shutil.copytree(DOCS, docs)
    shutil.copy(REPO / "CHANGELOG.md", tmp_path / "CHANGELOG.md")
    assert stale_pages(docs) == []
    page = docs / "rules" / "BN003.md"
    page.write_text(page.read_text().replace("error", "warning"))
    (docs / "rules" / "BN099.md").write_text("# a rule that no longer exists\n")
    (tmp_path / "CHANGELOG.md").write_text("# Changelog\n\nedited\n")
    stale = stale_pages(docs)
    assert stale[:2] == ["rules/BN003.md", "changelog.md"]
    assert stale[2].startswith("rules/BN099.md (not generated")
    assert main(["--check-docs", str(docs)]) == 1
    assert sorted(write_pages(docs)) == ["changelog.md", "rules/BN003.md", "rules/BN099.md"]
    assert stale_pages(docs) == [] and main(["--check-docs", str(docs)]) == 0


def test_every_rule_has_a_page_at_its_url() -> None:
    config = _mkdocs_config()
    assert config.get("use_directory_urls", True), "pages must live at rules/BN003/"
    assert config["site_url"].rstrip("/") + "/rules/" == DEFAULT_DOCS_URL
    for rule in load_rules(plugins=False):
        if rule.origin not in ("built-in", "diagnostic"):
            continue
        page = DOCS / "rules" / f"{rule.code}.md"
        text = page.read_text(encoding="utf-8")
        assert f"# {rule.code} {rule.name}\n" in text
        assert rule.url() == f"{config['site_url']}rules/{rule.code}/"
        assert f"| Default severity | {rule.spec.severity.label} |" in text
        assert f"| Since | {rule.spec.since} |" in text
        for heading, body in rule.sections().items():
            section = text[text.index(f"\n## {heading}\n") :]
            assert f"\n{body}\n" in section.split("\n## ", 2)[1], (rule.code, heading)
        for option, default in rule.spec.options.items():
            assert f"| `{option}` | `{toml_literal(default)}` |" in text, (rule.code, option)


def test_every_option_is_documented_in_the_rule_docstring() -> None:
    for rule in load_rules(plugins=False):
        documented = rule.sections().get("Options", "")
        for option in rule.spec.options:
            assert f"`{option}`" in documented, f"{rule.code}: option {option!r} undocumented"


def test_renamed_codes_get_a_redirect_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(REDIRECTS, "BN099", "BN003")
    monkeypatch.setitem(REDIRECTS, "old-training-mode", "BN003")
    pages = docs_pages(DOCS)
    assert "rules/BN099.md" in pages and not any("old-training-mode" in p for p in pages)
    page = pages["rules/BN099.md"]
    assert '<meta http-equiv="refresh" content="0; url=../BN003/">' in page
    assert "[BN003](BN003.md)" in page


def _pycon_blocks(text: str) -> list[str]:
    return re.findall(r"```pycon\n(.*?)```", text, flags=re.S)


def test_worked_examples_in_the_docs_run() -> None:
    """The ```pycon examples (the BatchNorm page's numbers) are doctests of bnlint.analysis.reference."""
    blocks = {page.name: _pycon_blocks(page.read_text()) for page in DOCS.glob("*.md")}
    assert len(blocks["batchnorm.md"]) >= 6
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for name, page_blocks in blocks.items():  # one test per page: later blocks reuse names
        runner.run(parser.get_doctest("\n".join(page_blocks), {}, name, name, 0))
    assert runner.summarize(verbose=False).failed == 0


def test_the_site_builds_offline_with_strict_checks(tmp_path: Path) -> None:
    """`mkdocs build --strict`: broken links, anchors, missing pages or nav entries fail."""
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for rule in load_rules(plugins=False):
        if rule.origin in ("built-in", "diagnostic"):
            assert (site / "rules" / rule.code / "index.html").is_file(), rule.code
    assert (site / "schemas" / "report.schema.json").read_bytes() == (
        REPO / "bnlint" / "schemas" / "report.schema.json"
    ).read_bytes()
    page = (site / "rules" / "BN003" / "index.html").read_text(encoding="utf-8")
    assert "edit/main/rules/bn003_training_mode_at_inference.py" in page, "edit opens the rule"
    loads = [
        (page.relative_to(site).as_posix(), url)
        for page in site.rglob("*.html")
        for url in _network_loads(page.read_text(encoding="utf-8"))
    ]
    assert not loads, f"pages that load from the network: {loads[:5]}"


_LOADING_RELS = {"stylesheet", "icon", "preload", "prefetch", "modulepreload", "manifest"}


class _Loads(HTMLParser):
    """Absolute URLs a browser would fetch while showing the page (links are not loads)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {key: value or "" for key, value in attrs}
        url = values.get("src", "") if tag in ("script", "img", "iframe", "source") else ""
        if tag == "link" and set(values.get("rel", "").split()) & _LOADING_RELS:
            url = values.get("href", "")
        if re.match(r"^(https?:)?//", url):
            self.urls.append(url)


def _network_loads(html: str) -> list[str]:
    parser = _Loads()
    parser.feed(html)
    return parser.urls
