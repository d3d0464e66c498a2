"""Renamed rule codes redirect, as in ruff; retired codes and names are never reused."""

from __future__ import annotations

from pathlib import Path

import pytest

from bnlint.engine.registry import REDIRECTS, RegistryError, load_rules, redirect
from tests.test_registry import write_plugin
from tests.zoo import onnx_zoo


@pytest.fixture
def renamed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend BN003 used to be BN099 `training-mode-bn`, and BN002's name was shorter."""
    monkeypatch.setitem(REDIRECTS, "BN099", "BN003")
    monkeypatch.setitem(REDIRECTS, "training-mode-bn", "BN003")
    monkeypatch.setitem(REDIRECTS, "small-batch", "BN002")


@pytest.fixture
def training_model(tmp_path: Path) -> Path:
    return onnx_zoo.opset14_training_mode(tmp_path / "t")  # BN003 error + BN011 info


def test_every_redirect_points_at_a_current_rule_and_retires_its_old_spelling() -> None:
    ruleset = load_rules(plugins=False)
    names = {rule.name for rule in ruleset}
    for old, new in REDIRECTS.items():
        assert ruleset.get(new) is not None and ruleset.get(new).code == new, (old, new)
        assert old.upper() not in ruleset.rules and old not in names, f"{old} was reused"


@pytest.mark.usefixtures("renamed")
def test_old_codes_and_names_resolve_to_the_current_rule() -> None:
    ruleset = load_rules(plugins=False)
    bn003 = ruleset.get("BN003")
    assert redirect("bn099") == "BN003" and redirect("BN003") == "BN003"
    assert ruleset.get("BN099") is bn003 and ruleset.get("training-mode-bn") is bn003
    assert ruleset.specificity("BN099", bn003) == ruleset.specificity("BN003", bn003) == 100
    assert ruleset.specificity("BN099", ruleset.get("BN011")) is None
    assert ruleset.is_enabled(bn003, ["BN099"], [])
    assert not ruleset.is_enabled(bn003, ["ALL"], ["training-mode-bn"])


@pytest.mark.usefixtures("renamed")
def test_selectors_and_ignores_accept_the_old_code(run_cli, training_model: Path) -> None:
    selected = run_cli([training_model, "--select", "BN099", "--format", "json"], exit_code=1)
    assert [f["code"] for f in selected.json["models"][0]["findings"]] == ["BN003"]
    ignored = run_cli([training_model, "--ignore", "training-mode-bn", "--format", "json"])
    assert "BN003" not in {f["code"] for f in ignored.json["models"][0]["findings"]}


@pytest.mark.usefixtures("renamed")
def test_rule_tables_under_an_old_name_configure_the_rule(
    run_cli, training_model: Path, tmp_path: Path
) -> None:
    config = tmp_path / "bnlint.toml"
    config.write_text('phase = "training"\n\n[small-batch]\nmin-batch-size = 64\n')
    result = run_cli(
        [training_model, "--config", config, "--select", "BN002", "--format", "json"],
        exit_code=1,
    )
    (finding,) = result.json["models"][0]["findings"]
    assert finding["code"] == "BN002" and finding["evidence"]["min_batch_size"] == 64


@pytest.mark.usefixtures("renamed")
def test_explain_follows_a_redirect_and_says_so(run_cli) -> None:
    result = run_cli(["explain", "BN099"])
    assert result.stdout.startswith("# BN003 batchnorm-training-mode-at-inference")
    assert result.stderr.strip() == "bnlint: note: BN099 was renamed to BN003"
    assert run_cli(["explain", "BN003"]).stderr == ""


@pytest.mark.usefixtures("renamed")
def test_no_rule_may_take_a_retired_code_or_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_rules((str(write_plugin(tmp_path / "a", code="XYZ099", name="fine")),))
    monkeypatch.setitem(REDIRECTS, "XYZ099", "BN003")
    with pytest.raises(RegistryError, match="'XYZ099' was renamed to BN003 and is never reused"):
        load_rules((str(write_plugin(tmp_path / "b", code="XYZ099", name="fine")),))
    with pytest.raises(RegistryError, match="'small-batch' was renamed to BN002"):
        load_rules((str(write_plugin(tmp_path / "c", code="XYZ100", name="small-batch")),))


@pytest.mark.usefixtures("renamed")
def test_severity_override_under_an_old_code_applies(run_cli, training_model: Path) -> None:
    (training_model.parent / "bnlint.toml").write_text('[severity]\nBN099 = "info"\n')
    result = run_cli([training_model, "--select", "BN003", "--format", "json"], exit_code=0)
    assert [(f["code"], f["severity"]) for f in result.json["models"][0]["findings"]] == [
        ("BN003", "info")
    ]
