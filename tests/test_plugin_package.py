"""The plug-in guide's example, as a user would ship it (issue 17).

docs/plugins.md holds a complete package: ``pyproject.toml`` with a ``bnlint.rules`` entry
point, a rule written against ``bnlint.plugin`` only that asks ``graph.nx`` a networkx
question, and its tests. Here the package is taken from the page as printed, built into a
wheel offline (``pip wheel --no-index --no-build-isolation``), unpacked onto
``PYTHONPATH`` (its ``.dist-info`` carries the entry point) and driven from outside: the
rule is listed by ``bnlint rules``, explained by ``bnlint explain``, runs in
``bnlint check`` and links to its own page in every format; the guide's own tests pass.
The same rule without a ``url`` links nowhere.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bnlint.engine.registry import RegistryError, load_rules

REPO = Path(__file__).resolve().parents[1]
GUIDE = REPO / "docs" / "plugins.md"
URL = "https://acme.example/bnlint-rules/ACME001/"
BLOCK = re.compile(r"```(?:python|toml)\n# acme-bnlint/(\S+)\n(.*?)```", re.S)


def guide_files() -> dict[str, str]:
    """The example package's files, by path, exactly as the guide prints them."""
    return dict(BLOCK.findall(GUIDE.read_text(encoding="utf-8")))


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(a work folder holding the two example models, the environment that sees the plug-in)."""
    work = tmp_path_factory.mktemp("plugin-package")
    source = work / "acme-bnlint"
    for name, text in guide_files().items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_text(text, encoding="utf-8")
    offline = ["--no-deps", "--no-build-isolation", "--no-index"]  # nothing downloaded
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "-q", *offline, "-w", str(work / "dist")]
    built = _run([*pip_wheel, str(source)], dict(os.environ), work)
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("acme_bnlint-*.whl")
    site = work / "site"
    zipfile.ZipFile(wheel).extractall(site)
    entry_points = next(site.glob("acme_bnlint-*.dist-info")) / "entry_points.txt"
    assert "[bnlint.rules]" in entry_points.read_text()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    made = _run(
        [
            sys.executable,
            "-c",
            "import sys, onnx; sys.path.insert(0, 'acme-bnlint/tests');"
            " from test_unnormalized_path import network;"
            " onnx.save(network(skip=True), 'skip.onnx'); onnx.save(network(skip=False), 'ok.onnx')",
        ],
        env,
        work,
    )
    assert made.returncode == 0, made.stderr
    return work, env


def test_the_example_rule_uses_only_the_plugin_api() -> None:
    files = guide_files()
    assert set(files) == {
        "pyproject.toml",
        "acme_bnlint/__init__.py",
        "acme_bnlint/unnormalized_path.py",
        "tests/test_unnormalized_path.py",
    }
    rule = ast.parse(files["acme_bnlint/unnormalized_path.py"])
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(rule)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert {name for name in imported if name.split(".")[0] == "bnlint"} == {"bnlint.plugin"}
    assert "networkx" in imported and "graph.nx" in files["acme_bnlint/unnormalized_path.py"]
    assert '[project.entry-points."bnlint.rules"]' in files["pyproject.toml"]


def test_every_name_of_the_plugin_api_is_documented_and_nothing_else_is_exported() -> None:
    import bnlint.plugin

    guide = GUIDE.read_text(encoding="utf-8")
    table = guide.split("## The plug-in API", 1)[1].split("\n## ", 1)[0]
    assert all(f"`{name}`" in table for name in bnlint.plugin.__all__)
    public = {name for name in vars(bnlint.plugin) if not name.startswith("_")}
    assert public - {"annotations"} == set(bnlint.plugin.__all__)


def test_the_installed_plugin_is_a_first_class_rule(installed) -> None:
    work, env = installed
    bnlint = [sys.executable, "-m", "bnlint"]

    listed = _run([*bnlint, "rules", "--format", "json"], env, work)
    assert listed.returncode == 0, listed.stderr
    (row,) = [rule for rule in json.loads(listed.stdout) if rule["code"] == "ACME001"]
    assert row["name"] == "unnormalized-path-to-output" and row["url"] == URL
    assert row["origin"] == "entry point 'unnormalized-path-to-output'"

    explained = _run([*bnlint, "explain", "ACME001"], env, work)
    assert explained.returncode == 0, explained.stderr
    assert f"Documentation: {URL}" in explained.stdout
    assert "## What it detects" in explained.stdout and "restricted_view" not in explained.stdout

    argv = [*bnlint, "check", "skip.onnx", "ok.onnx", "--select", "ACME001", "--format", "json"]
    checked = _run([*argv, "--report-html", "r.html", "--report-md", "r.md"], env, work)
    assert checked.returncode == 1, checked.stderr
    models = {model["path"]: model["findings"] for model in json.loads(checked.stdout)["models"]}
    assert models["ok.onnx"] == []
    (finding,) = models["skip.onnx"]
    assert finding["code"] == "ACME001" and finding["node"] == "head" and finding["url"] == URL
    assert finding["evidence"]["input"] == "x" and finding["evidence"]["path"] == ["head"]
    assert f'<a href="{URL}" rel="noreferrer">' in (work / "r.html").read_text()
    assert f"[ACME001]({URL})" in (work / "r.md").read_text()
    sarif = _run([*argv[:-1], "sarif"], env, work)
    (rule,) = json.loads(sarif.stdout)["runs"][0]["tool"]["driver"]["rules"]
    assert rule["id"] == "ACME001" and rule["helpUri"] == URL


def test_the_guides_own_tests_pass_against_the_installed_plugin(installed) -> None:
    work, env = installed
    run = work / "run"  # outside the source tree: acme_bnlint comes from the wheel
    run.mkdir(exist_ok=True)
    test_file = run / "test_unnormalized_path.py"
    test_file.write_text((work / "acme-bnlint/tests/test_unnormalized_path.py").read_text())
    result = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)], env, run
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "4 passed" in result.stdout


def _without_url(folder: Path) -> Path:
    """The guide's rule as a --rules-dir module that declares no documentation page."""
    text = guide_files()["acme_bnlint/unnormalized_path.py"]
    assert f'    url="{URL}",\n' in text
    folder.mkdir()
    (folder / "unnormalized_path.py").write_text(text.replace(f'    url="{URL}",\n', ""))
    return folder


def test_a_plugin_without_a_url_links_nowhere(run_cli, tmp_path: Path) -> None:
    import onnx

    from tests.zoo.onnx_builder import GraphBuilder

    rules = _without_url(tmp_path / "rules")
    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 3, 8, 8])
    (head,) = g.node("Concat", [g.relu(g.bn(g.conv(x, 4, name="conv"), name="bn")), x], axis=1)
    model = tmp_path / "skip.onnx"
    onnx.save(g.model([head]), model)
    html, md = tmp_path / "r.html", tmp_path / "r.md"
    common = [model, "--rules-dir", rules, "--select", "ACME001"]

    result = run_cli(
        [*common, "--format", "json", "--report-html", html, "--report-md", md], exit_code=1
    )
    (finding,) = result.json["models"][0]["findings"]
    assert finding["code"] == "ACME001" and finding["url"] is None
    page = html.read_text()
    assert "ACME001 online" not in page and "bnlint.github.io/bnlint/rules/ACME001" not in page
    assert 'id="rule-ACME001"' in page, "its documentation is still in the report"
    assert "| ACME001 unnormalized-path-to-output |" in md.read_text()
    assert "](" not in md.read_text().split("ACME001", 1)[1].split("\n", 1)[0]
    sarif = json.loads(run_cli([*common, "--format", "sarif"], exit_code=1).stdout)
    (rule,) = sarif["runs"][0]["tool"]["driver"]["rules"]
    assert rule["id"] == "ACME001" and "helpUri" not in rule
    assert "url" not in sarif["runs"][0]["results"][0]["properties"]
    for output in ("text", "github", "gitlab", "junit"):
        shown = run_cli([*common, "--format", output], exit_code=1).stdout
        assert "ACME001" in shown and "Docs:" not in shown and "/ACME001/" not in shown, output
    explained = run_cli(["explain", "ACME001", "--rules-dir", rules]).stdout
    assert explained.startswith("# ACME001 unnormalized-path-to-output")
    assert "Documentation:" not in explained and "http" not in explained
    assert run_cli(["explain", "ACME001"], exit_code=2).stderr.startswith("bnlint: error")
    rows = json.loads(run_cli(["rules", "--rules-dir", rules, "--format", "json"]).stdout)
    assert [row["url"] for row in rows if row["code"] == "ACME001"] == [None]


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "acme.example/ACME001", "https://", "https://a b/", 42]
)
def test_a_plugin_url_must_be_an_absolute_http_url(tmp_path: Path, url: object) -> None:
    folder = tmp_path / "rules"
    text = guide_files()["acme_bnlint/unnormalized_path.py"]
    folder.mkdir()
    (folder / "rule.py").write_text(text.replace(repr(URL).replace("'", '"'), repr(url)))
    with pytest.raises(RegistryError, match="url must be an absolute http"):
        load_rules([str(folder)])
