"""Rule discovery: built-ins, --rules-dir, entry points; malformed or colliding rules refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnlint.engine.registry import RegistryError, load_rules
from tests.zoo import onnx_zoo

REPO = Path(__file__).resolve().parents[1]

PLUGIN = '''
"""Flags every BatchNorm whose channel count is not a multiple of {multiple}.

## What it detects
BatchNorm layers with a channel count that is not a multiple of the configured value.
## Why it matters
Some accelerators pad channels to a multiple of a vector width, wasting compute.
## Example
A BatchNorm over 4 channels with `multiple = 8`.
## Fix
Round the channel count up to the multiple when designing the network.
## Options
- `multiple`: the required multiple (default {multiple}).
"""
from bnlint.fold import bn_channels
from bnlint.rule import RuleSpec, Severity

RULE = RuleSpec(code="{code}", name="{name}", severity=Severity.WARNING, since="1.0",
                options={{"multiple": {multiple}}}, needs={{"parameters"}}, runs_without_phase=True)


def check(graph, ctx):
    {body}
'''


def write_plugin(
    folder: Path,
    code: str = "ACME001",
    name: str = "channel-multiple",
    body: str | None = None,
    filename: str = "acme.py",
) -> Path:
    body = body or (
        "for bn in graph.nodes_of('batch_norm'):\n"
        "        if bn_channels(graph, bn) % ctx.options['multiple']:\n"
        "            yield ctx.finding(bn, 'odd channel count', evidence={'channels': bn_channels(graph, bn)})"
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / filename).write_text(PLUGIN.format(code=code, name=name, multiple=8, body=body))
    return folder


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return onnx_zoo.opset14_training_mode(tmp_path / "m")  # one BN over 4 channels


def test_builtin_rules_are_valid_and_unique() -> None:
    rules = list(load_rules())
    assert len({rule.code for rule in rules}) == len(rules)
    assert len({rule.name for rule in rules}) == len(rules)
    assert all(
        rule.module.startswith("bnlint.rules.") for rule in rules if rule.origin == "built-in"
    )


def test_rules_dir_plugin_runs_with_its_options(run_cli, model: Path, tmp_path: Path) -> None:
    plugins = write_plugin(tmp_path / "plugins")
    result = run_cli(
        [model, "--rules-dir", plugins, "--select", "ACME", "--format", "json"], exit_code=1
    )
    (finding,) = result.json["models"][0]["findings"]
    assert finding["code"] == "ACME001" and finding["evidence"] == {"channels": 4}
    config = tmp_path / "m" / "bnlint.toml"
    config.write_text(
        f'rules-dir = ["{plugins}"]\nselect = ["ACME001"]\n[channel-multiple]\nmultiple = 2\n'
    )
    named = run_cli([model, "--config", config, "--format", "json"], exit_code=0)
    assert named.json["models"][0]["findings"] == []
    refused = run_cli([model, "--format", "json"], exit_code=2)  # discovered: data, no import
    assert "rules-dir imports code" in refused.stderr and "--rules-dir DIR" in refused.stderr
    listed = run_cli(["rules", "--rules-dir", plugins]).stdout
    assert "ACME001  channel-multiple" in listed


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"code": "BN001"}, "is not of the form"),
        ({"code": "acme1"}, "is not of the form"),
        ({"name": "Channel_Multiple"}, "is not kebab-case"),
        ({"name": "foldable-batchnorm"}, "duplicate rule name 'foldable-batchnorm'"),
    ],
)
def test_malformed_plugins_are_refused(
    run_cli, model: Path, tmp_path: Path, kwargs, problem
) -> None:
    plugins = write_plugin(tmp_path / "plugins", **kwargs)
    result = run_cli([model, "--rules-dir", plugins], exit_code=2)
    assert problem in result.stderr and result.stderr.count("\n") == 1


def test_duplicate_codes_are_refused(tmp_path: Path) -> None:
    plugins = write_plugin(tmp_path / "plugins")
    write_plugin(plugins, name="other-name", filename="acme_copy.py")
    with pytest.raises(RegistryError, match="duplicate rule code ACME001"):
        load_rules([str(plugins)])


def test_undocumented_rule_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "bare.py").write_text(
        '"""Nothing."""\nfrom bnlint.rule import RuleSpec, Severity\n'
        'RULE = RuleSpec(code="ACME002", name="bare", severity=Severity.INFO, since="1")\n'
        "def check(graph, ctx):\n    return ()\n"
    )
    with pytest.raises(RegistryError, match="docstring lacks sections: What it detects"):
        load_rules([str(folder)])


def test_crashing_rule_becomes_bn902_and_the_run_goes_on(
    run_cli, model: Path, tmp_path: Path
) -> None:
    plugins = write_plugin(tmp_path / "plugins", body="raise KeyError('missing-tensor')")
    result = run_cli([model, "--rules-dir", plugins, "--format", "json"], exit_code=1)
    found = {f["code"]: f for f in result.json["models"][0]["findings"]}
    assert (
        found["BN902"]["message"]
        == "rule ACME001 (channel-multiple) crashed: KeyError: 'missing-tensor'"
    )
    assert "BN003" in found, "other rules still ran"


def test_entry_point_plugins_are_discovered(model: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    write_plugin(site / "acme_rules", filename="channels.py")
    (site / "acme_rules" / "__init__.py").write_text("")
    dist = site / "acme_rules-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rules\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[bnlint.rules]\nchannels = acme_rules.channels\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    result = subprocess.run(
        [sys.executable, "-m", "bnlint", str(model), "--select", "ACME001", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    findings = json.loads(result.stdout)["models"][0]["findings"]
    assert [f["code"] for f in findings] == ["ACME001"]


def test_debug_prints_rule_tracebacks_on_stderr(model: Path, tmp_path: Path) -> None:
    plugins = write_plugin(tmp_path / "plugins", body="raise KeyError('missing-tensor')")
    result = subprocess.run(
        [sys.executable, "-m", "bnlint", str(model), "--rules-dir", str(plugins), "--debug", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert "Traceback" in result.stderr and "KeyError" in result.stderr
    assert "BN902" in result.stdout


def test_unreadable_parameter_in_a_rule_becomes_bn901(run_cli, tmp_path: Path) -> None:
    import onnx

    from tests.zoo.onnx_builder import GraphBuilder

    g = GraphBuilder(opset=15)
    x = g.input("x", [1, 4, 4, 4])
    model = g.model([g.bn(x, name="bn")], infer=False)
    var = next(t for t in model.graph.initializer if t.name.endswith("running_var"))
    var.raw_data = var.raw_data[:4]
    path = tmp_path / "corrupt.onnx"
    onnx.save(model, path)
    plugins = write_plugin(
        tmp_path / "plugins", body="graph.param('bn.running_var')\n    return ()"
    )
    result = run_cli(
        [path, "--rules-dir", plugins, "--select", "ACME001", "--format", "json"], exit_code=1
    )
    (finding,) = result.json["models"][0]["findings"]
    assert finding["code"] == "BN901"
    assert finding["message"] == (
        "tensor 'bn.running_var' declares (4,) (16 bytes) but holds 4 bytes; "
        "rule ACME001 (channel-multiple) could not complete"
    )


def test_a_rule_that_needs_a_runtime_is_scheduled_only_with_verify(
    run_cli, model: Path, tmp_path: Path
) -> None:
    plugins = write_plugin(tmp_path / "plugins")
    source = plugins / "acme.py"
    source.write_text(source.read_text().replace('needs={"parameters"}', 'needs={"runtime"}'))
    args = [model, "--rules-dir", plugins, "--select", "ACME001", "--format", "json"]
    quiet = run_cli(args, exit_code=0).json
    assert quiet["models"][0]["findings"] == []  # not scheduled, and no BN901 about it
    assert "ACME001" not in quiet["provenance"]["models"][0]["rules_run"]
    verified = run_cli([*args, "--verify"], exit_code=1).json
    assert [f["code"] for f in verified["models"][0]["findings"]] == ["ACME001"]
    assert "ACME001" in verified["provenance"]["models"][0]["rules_run"]
    assert verified["provenance"]["verification"]["rules_run"] == ["ACME001"]
    (builtin,) = [r for r in load_rules() if r.code == "BN012"]
    assert "runtime" in builtin.spec.needs


def test_reports_document_findings_with_the_runs_rules_without_reloading_them(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bnlint
    from bnlint.engine import registry
    from bnlint.report import RenderOptions, render

    plugins = write_plugin(tmp_path / "plugins")
    report = bnlint.lint(str(model), rules_dirs=[str(plugins)], select=["ACME001", "BN003"])
    assert {"ACME001", "BN003"} <= set(report.rules)

    loads: list[object] = []
    monkeypatch.setattr(registry, "load_rules", lambda *a, **k: loads.append(a))
    page = render(report, "html", RenderOptions())
    assert "odd channel count" in page and "Some accelerators pad channels" in page  # its docs
    assert loads == []
    report.rules = None  # a report built by hand: the installed rules are loaded
    render(report, "html", RenderOptions())
    assert loads
