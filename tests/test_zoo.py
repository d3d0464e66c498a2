"""Every rule over every zoo model, in both main phases, against reviewed snapshots.

Run ``pytest tests/test_zoo.py --update-snapshots`` after an intended change and review
the JSON diff: it shows exactly which findings moved.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from bnlint.api import lint
from tests.zoo.onnx_zoo import ZOO

SNAPSHOTS = Path(__file__).parent / "snapshots" / "zoo"


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo")


def _rounded(value):
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def _snapshot(path: Path, phase: str) -> list[dict]:
    # BN011 is opt-in (a report people ask for, not a defect): the zoo still covers it.
    (model,) = lint(str(path), phase=phase, extend_select=["BN011"]).models
    assert model.status == "ok", model.error
    return [
        {
            "code": finding.code,
            "node": finding.scope or finding.node,
            "severity": finding.severity.label,
            "evidence": _rounded(finding.to_dict()["evidence"]),
        }
        for finding in model.findings
    ]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_is_valid_onnx(name: str, zoo_dir: Path) -> None:
    path = ZOO[name](zoo_dir / name)
    onnx.checker.check_model(str(path), full_check=True)


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_rule_on_zoo_model_matches_snapshot(
    name: str, zoo_dir: Path, update_snapshots: bool
) -> None:
    path = ZOO[name](zoo_dir / name)
    actual = {phase: _snapshot(path, phase) for phase in ("inference", "training")}
    snapshot = SNAPSHOTS / f"{name}.json"
    if update_snapshots:
        snapshot.write_text(json.dumps(actual, indent=1, sort_keys=True) + "\n")
    assert snapshot.exists(), f"no snapshot for {name}: run pytest --update-snapshots and review it"
    expected = json.loads(snapshot.read_text())
    assert actual == expected, f"{name}: findings differ from {snapshot.name}"
