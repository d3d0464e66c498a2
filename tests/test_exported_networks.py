"""Issue 2's acceptance: a ResNet-style network exported every way torch 2.13 exports it."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from bnlint.api import lint  # noqa: E402
from tests.zoo.torch_models import ResNetSmall, fill_bn_statistics  # noqa: E402

BN_COUNT = 10  # ResNetSmall's BatchNorm2d layers


def _export(model, path: Path, **kwargs) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (ResNetSmall.example_input(),), str(path), **kwargs)
    return path


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("exports")
    torch.manual_seed(0)
    trained = fill_bn_statistics(ResNetSmall(), ResNetSmall.example_input())
    torch.manual_seed(0)
    fresh = ResNetSmall().eval()
    legacy = {
        "dynamo": False,
        "training": torch.onnx.TrainingMode.PRESERVE,
        "do_constant_folding": False,
    }
    return {
        "training": _export(
            trained,
            folder / "training.onnx",
            dynamo=False,
            training=torch.onnx.TrainingMode.TRAINING,
        ),
        "preserve": _export(trained.eval(), folder / "preserve.onnx", **legacy),
        "dynamo": _export(trained.eval(), folder / "dynamo.onnx", dynamo=True, optimize=False),
        "default": _export(trained.eval(), folder / "default.onnx"),
        "untrained": _export(fresh, folder / "untrained.onnx", **legacy),
    }


def findings(path: Path):
    (model,) = lint(str(path)).models
    assert model.status == "ok", model.error
    return model.findings


def test_training_export_reports_bn003_at_every_bn(exports) -> None:
    bn003 = [f for f in findings(exports["training"]) if f.code == "BN003"]
    assert len(bn003) == BN_COUNT
    assert len({f.node for f in bn003}) == BN_COUNT
    assert all(f.severity.label == "error" for f in bn003)


@pytest.mark.parametrize("kind", ["preserve", "dynamo"])
def test_bn_preserving_eval_exports_report_only_foldable_bns(exports, kind: str) -> None:
    (model,) = lint(str(exports[kind])).models
    assert model.findings == [], [(f.code, f.message) for f in model.findings]
    assert (model.batchnorms, model.foldable) == (BN_COUNT, BN_COUNT)
    (verdicts,) = lint(str(exports[kind]), select=["BN011"]).models
    found = verdicts.findings
    assert Counter(f.code for f in found) == {"BN011": BN_COUNT}
    assert all(f.evidence["foldable"] for f in found)
    assert {f.scope for f in found} >= {"bn1", "layer1.0.bn1", "layer2.0.downsample.1"}


def test_default_export_has_bn_folded_and_nothing_to_report(exports) -> None:
    assert findings(exports["default"]) == []


def test_untrained_network_reports_bn005(exports) -> None:
    bn005 = [f for f in findings(exports["untrained"]) if f.code == "BN005"]
    assert len(bn005) == BN_COUNT
