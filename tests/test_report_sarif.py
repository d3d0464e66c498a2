"""SARIF 2.1.0: valid against the official schema, documented rules, located results."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from urllib.parse import unquote, urlparse

import jsonschema
import pytest

from tests.report_models import MARKUP_NODE, XSS_NODE, build_models

SCHEMA = Path(__file__).parent / "data" / "sarif" / "sarif-schema-2.1.0.json"


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft4Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())


def validate_sarif(data: dict) -> None:
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:20])
    assert not github_ingestion_problems(data), github_ingestion_problems(data)[:20]


def github_ingestion_problems(data: dict) -> list[str]:
    """What GitHub code scanning requires beyond the schema ("SARIF support for code
    scanning", docs.github.com; the GH rules of microsoft/sarif-sdk's validator): a
    physical location with ``region.startLine`` on every result and related location
    (GH1001, GH1003: no alert is placed without one), file paths as relative URIs or
    ``file:`` URIs (GH1005), rules with shortDescription, fullDescription and help.text
    (GH2012), flat message text (GH1007), and GitHub's documented per-run limits (25,000
    results, 1,000 locations per result, 20 tags per rule)."""
    problems = []
    for run in data["runs"]:
        results = run.get("results", [])
        if len(results) > 25_000:
            problems.append(f"{len(results)} results in one run")
        for rule in run["tool"]["driver"].get("rules", []):
            for key in ("shortDescription", "fullDescription"):
                if not rule.get(key, {}).get("text", "").strip():
                    problems.append(f"{rule['id']}: no {key}.text")
            if not rule.get("help", {}).get("text", "").strip():
                problems.append(f"{rule['id']}: no help.text")
            if len(rule.get("properties", {}).get("tags", [])) > 20:
                problems.append(f"{rule['id']}: over 20 tags")
        for number, result in enumerate(results):
            if not result.get("message", {}).get("text") or "id" in result["message"]:
                problems.append(f"result {number}: message is not flat text")
            locations = result.get("locations") or []
            if not locations or len(locations) > 1000:
                problems.append(f"result {number}: {len(locations)} locations")
            for where in [*locations, *result.get("relatedLocations", [])]:
                physical = where.get("physicalLocation") or {}
                uri = physical.get("artifactLocation", {}).get("uri", "")
                if not uri or (urlparse(uri).scheme not in ("", "file")):
                    problems.append(f"result {number}: uri {uri!r}")
                start = physical.get("region", {}).get("startLine")
                if not isinstance(start, int) or start < 1:
                    problems.append(f"result {number}: no region.startLine at {uri!r}")
    return problems


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return [str(path) for path in build_models(tmp_path_factory.mktemp("sarif"))]


def test_the_validator_rejects_a_broken_log() -> None:
    with pytest.raises(AssertionError, match="version"):
        validate_sarif({"version": "2.0.0", "runs": []})


def test_sarif_is_valid_and_documents_every_rule(run_cli, models: list[str]) -> None:
    data = json.loads(run_cli([*models, "--format", "sarif"], exit_code=2).stdout)
    validate_sarif(data)
    run = data["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == list(
        dict.fromkeys(r["ruleId"] for r in run["results"])
    )
    for index, rule in enumerate(rules):
        assert rule["helpUri"] == f"https://bnlint.github.io/bnlint/rules/{rule['id']}/"
        assert "## Why it matters" in rule["help"]["markdown"], rule["id"]
        assert "WHY IT MATTERS" in rule["help"]["text"] and "`" not in rule["help"]["text"]
        assert rule["shortDescription"]["text"].endswith(".")
        assert all(r["ruleIndex"] == index for r in run["results"] if r["ruleId"] == rule["id"])
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels["BN003"] == "error" and levels["BN015"] == "warning"
    args = [*models, "--format", "sarif", "--select", "BN011"]
    noted = json.loads(run_cli(args, exit_code=2).stdout)
    validate_sarif(noted)
    assert {r["level"] for r in noted["runs"][0]["results"]} == {"note"}


def test_results_sit_at_the_model_file_with_the_node_as_logical_location(
    run_cli, models: list[str]
) -> None:
    run = json.loads(run_cli([*models, "--format", "sarif"], exit_code=2).stdout)["runs"][0]
    hostile = [r for r in run["results"] if "hostile" in json.dumps(r["locations"])]
    assert hostile, "the hostile model has results"
    location = hostile[0]["locations"][0]
    uri = location["physicalLocation"]["artifactLocation"]["uri"]
    assert urlparse(uri).scheme == "file" and unquote(urlparse(uri).path).endswith("hostile.onnx")
    assert {r["locations"][0]["logicalLocations"][0]["name"] for r in hostile} == {
        XSS_NODE,
        MARKUP_NODE,
    }
    unreadable = run["invocations"][0]["toolExecutionNotifications"]
    assert run["invocations"][0]["executionSuccessful"] is False
    assert "corrupt.onnx" in json.dumps(unreadable[0]["locations"])


def test_paths_inside_the_repository_are_relative_to_its_root(run_cli, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    model = build_models(repo / "models")[0]
    result = run_cli([model, "--format", "sarif"], exit_code=1)
    run = json.loads(result.stdout)["runs"][0]
    validate_sarif(json.loads(result.stdout))
    artifact = run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {
        "uri": "models/training/opset14_training_mode.onnx",
        "uriBaseId": "SRCROOT",
        "index": 0,
    }
    assert run["artifacts"][0]["location"] == {k: artifact[k] for k in ("uri", "uriBaseId")}


def test_docs_url_setting_drives_help_uri(run_cli, models: list[str], tmp_path: Path) -> None:
    config = tmp_path / "bnlint.toml"
    config.write_text('docs-url = "https://docs.example.org/bn/"\n')
    run = json.loads(
        run_cli([models[0], "--format", "sarif", "--config", config], exit_code=1).stdout
    )["runs"][0]
    assert {rule["helpUri"] for rule in run["tool"]["driver"]["rules"]} == {
        "https://docs.example.org/bn/BN003/",
    }


def test_a_relative_docs_url_is_refused(run_cli, models: list[str], tmp_path: Path) -> None:
    config = tmp_path / "bnlint.toml"
    config.write_text('docs-url = "docs/rules/"\n')
    result = run_cli([models[0], "--config", config], exit_code=2)
    assert "docs-url must be an absolute http(s) URL" in result.stderr


def test_baseline_state_on_every_result(run_cli, models: list[str], tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.json"
    run_cli([models[0], models[1], "--write-baseline", baseline, "-q"], exit_code=0)
    data = json.loads(
        run_cli(
            [models[0], models[2], "--format", "sarif", "--baseline", baseline], exit_code=1
        ).stdout
    )
    validate_sarif(data)
    states = [(r["ruleId"], r["baselineState"]) for r in data["runs"][0]["results"]]
    assert states[:1] == [("BN003", "unchanged")]
    assert {state for _, state in states[1:]} == {"new"}
    absent = [r for r in data["runs"][0]["results"] if r["baselineState"] == "absent"]
    assert absent == [], "resnet was not linted this time, so nothing of it is 'fixed'"


def test_artifacts_carry_hashes_and_the_invocation_its_command(run_cli, models: list[str]) -> None:
    import hashlib

    args = [*models, "--format", "sarif"]
    data = json.loads(run_cli(args, exit_code=2).stdout)
    validate_sarif(data)
    run = data["runs"][0]
    readable = [p for p in models if not p.endswith("corrupt.onnx")]  # refused: not hashed
    hashes = {hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in readable}
    assert {a["hashes"]["sha-256"] for a in run["artifacts"]} == hashes
    for artifact, path in zip(run["artifacts"], readable, strict=True):
        assert artifact["length"] == Path(path).stat().st_size
    for result in run["results"]:
        location = result["locations"][0]["physicalLocation"]["artifactLocation"]
        target = run["artifacts"][location["index"]]["location"]
        assert target == {k: v for k, v in location.items() if k != "index"}
    invocation = run["invocations"][0]
    assert invocation["arguments"] == [str(a) for a in args]
    assert invocation["commandLine"].startswith("bnlint ") and invocation["commandLine"].endswith(
        "--format sarif"
    )
    assert invocation["startTimeUtc"] <= invocation["endTimeUtc"]
    assert invocation["workingDirectory"]["uri"].startswith("file://")
    assert run["properties"]["provenance"]["models"][0]["sha256"] in hashes


def test_a_python_source_line_in_the_repository_is_the_results_region(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15: code scanning places an alert at a line. A BN whose exporter recorded a
    frame of another machine (``/home/alice/proj/src/net.py:42``) that names a file of this
    repository is located there, relative to the root, with the model file as a related
    location; a frame naming no file of the repository leaves the model file, line 1."""
    import onnx

    from tests.zoo.onnx_builder import GraphBuilder

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    (repo / "src" / "net.py").write_text("# the model's code\n" * 50)

    def model(name: str, frame: str) -> Path:
        g = GraphBuilder(opset=18)
        out = g.bn(g.conv(g.input("x", [1, 3, 4, 4]), 2), name="bn", training=True)
        built = g.model([out])
        node = next(n for n in built.graph.node if n.op_type == "BatchNormalization")
        trace = f'File "{frame}", line 42, in forward\n    x = self.bn(x)'
        onnx.helper.set_metadata_props(node, {"pkg.torch.onnx.stack_trace": trace})
        path = repo / "models" / f"{name}.onnx"
        path.parent.mkdir(exist_ok=True)
        onnx.save(built, path)
        return path

    model("here", "/home/alice/proj/src/net.py")
    model("elsewhere", "/home/alice/proj/vendor/other.py")
    monkeypatch.chdir(repo)
    out = run_cli(["models", "--select", "BN003", "--format", "sarif"], exit_code=1).stdout
    data = json.loads(out)
    validate_sarif(data)
    results = {
        r["relatedLocations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        if "relatedLocations" in r
        else r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]: r
        for r in data["runs"][0]["results"]
    }
    here = results["models/here.onnx"]["locations"][0]["physicalLocation"]
    assert here["artifactLocation"]["uri"] == "src/net.py" and here["region"]["startLine"] == 42
    related = results["models/here.onnx"]["relatedLocations"][0]["physicalLocation"]
    assert related["region"]["startLine"] == 1
    other = results["models/elsewhere.onnx"]["locations"][0]["physicalLocation"]
    assert other["artifactLocation"]["uri"] == "models/elsewhere.onnx"
    assert other["region"] == {"startLine": 1}
    text = run_cli(["models", "--select", "BN003"], exit_code=1).stdout
    assert "  --> src/net.py:42" in text.splitlines()
