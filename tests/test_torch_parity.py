"""Parity: one model as module:factory, .pt2, TorchScript, ONNX and weights files gives the
same findings (same codes at the same module paths) for every rule the format can express.

Each zoo architecture gets defects at known layers (eps, momentum, a layer left in train
mode, a negative variance, untrained statistics, a conv bias before BN) so the rules have
something to find. Every built-in rule present at run time then runs on every format, so
rules added later are covered automatically. The parity set per format:

- ``pt2`` (read statically) and TorchScript with ``--trust-model-code``: every rule.
- TorchScript read statically: the rules whose ``needs`` exclude "edges" (no dataflow graph).
- ONNX with BN preserved: every rule except those that need module facts ("modules":
  ``requires_grad``, module classes such as SyncBatchNorm), which ONNX does not carry.
- state dict and safetensors: the phase-less parameter rules (``runs_without_phase``)
  except BN014 and BN015, since eps and momentum are not stored in a state dict.

Dynamic checks (``--verify``: BN012, BN018) are off by default and not compared; BN9xx
diagnostics are about the reading, not the model, and differ by design.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from bnlint.api import lint
from bnlint.engine.registry import load_rules
from tests.torch_formats import bn_layers, save_all
from tests.zoo import torch_models

ARCHITECTURES = ["resnet_small", "mobilenet_block", "transformer_bn1d"]
RULES = [rule for rule in load_rules() if rule.origin == "built-in"]
DYNAMIC = {"BN012", "BN018"}
NOT_IN_STATE_DICT = {"BN014", "BN015"}


def parity_set(fmt: str) -> set[str]:
    codes = {rule.code for rule in RULES} - DYNAMIC
    if fmt == "onnx":
        return {r.code for r in RULES if "modules" not in r.spec.needs} - DYNAMIC
    if fmt in ("state_dict", "safetensors"):
        phase_less = {r.code for r in RULES if r.spec.runs_without_phase}
        return phase_less - DYNAMIC - NOT_IN_STATE_DICT
    return codes


def add_defects(model: nn.Module) -> dict[str, str]:
    """Plant one defect per BN layer (as many as the network has); returns layer -> defect."""
    layers = bn_layers(model)
    planted: dict[str, str] = {}
    defects = ["eps", "train", "momentum", "negative_var", "untrained"]
    for (name, bn), defect in zip(layers, defects, strict=False):
        planted[name] = defect
        if defect == "eps":
            bn.eps = 1e-3
        elif defect == "train":
            bn.train()
        elif defect == "momentum":
            bn.momentum = 0.99
        elif defect == "negative_var":
            with torch.no_grad():
                bn.running_var[0] = -1.0
        elif defect == "untrained":
            bn.reset_running_stats()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.bias is None]
    if convs:
        convs[0].bias = nn.Parameter(torch.linspace(0.1, 0.5, convs[0].out_channels))
    return planted


def build(name: str) -> tuple[nn.Module, tuple]:
    model = torch_models.build(name)
    add_defects(model)
    return model, (torch_models.example_input(name),)


def keyed(report, codes: set[str]) -> set[tuple[str, str]]:
    return {(f.code, f.scope or f.node or "<model>") for f in report.findings if f.code in codes}


@pytest.fixture(scope="module", params=ARCHITECTURES)
def saved(request, tmp_path_factory) -> tuple[str, dict[str, Path], object]:
    name = request.param
    model, example = build(name)
    reference = lint(model, example_inputs=example, extend_select=["BN011"])  # opt-in
    assert reference.models[0].status == "ok"
    paths = save_all(model, example, tmp_path_factory.mktemp(name))
    return name, paths, reference


def test_reference_is_not_vacuous(saved) -> None:
    name, _, reference = saved
    codes = {f.code for f in reference.findings}
    assert {"BN003", "BN011", "BN014"} <= codes, codes
    if name != "transformer_bn1d":  # it has only two BN layers and no conv
        assert {"BN005", "BN006", "BN007", "BN015"} <= codes, codes
    layers = len(bn_layers(torch_models.build(name, fill_stats=False)))
    assert len(keyed(reference, parity_set("pt2"))) > layers


@pytest.mark.parametrize(
    ("fmt", "path_key", "settings"),
    [
        ("pt2", "pt2", {}),
        ("torchscript-static", "script", {}),
        ("torchscript-static", "trace", {}),
        ("torchscript-trusted", "script", {"trust_model_code": True}),
        ("torchscript-trusted", "trace", {"trust_model_code": True}),
        ("onnx", "onnx", {}),
        ("state_dict", "state_dict", {}),
        ("safetensors", "safetensors", {}),
    ],
)
def test_same_findings_as_the_module(saved, fmt: str, path_key: str, settings: dict) -> None:
    name, paths, reference = saved
    codes = parity_set(fmt)
    phase = {"phase": "inference"} if fmt not in ("state_dict", "safetensors") else {}
    report = lint(str(paths[path_key]), extend_select=["BN011"], **settings, **phase)
    assert report.models[0].status == "ok", report.models[0].error
    expected, got = keyed(reference, codes), keyed(report, codes)
    assert got == expected, (
        f"{name} as {fmt} ({path_key}): missing {sorted(expected - got)}, "
        f"extra {sorted(got - expected)}"
    )
