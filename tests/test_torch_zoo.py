"""The parity zoo in every PyTorch format: planted defects found, clean twins clean.

``tests/zoo/torch_parity.py`` plants one BatchNorm defect per network (labelled with the
finding that names it) and keeps a clean twin of each. Every network is saved once per
session as ``.pt2``, scripted and traced TorchScript, state dict, checkpoint dict, whole
pickled module and safetensors (``tests.torch_formats.save_parity_zoo``), then:

- static TorchScript gives exactly the findings of trusted TorchScript (``torch.jit.load``),
  finding for finding, on every network and both settings (inference, training);
- each format reaches every labelled defect that what it stores implies; the ones it
  cannot reach are listed below with the reason (names and shapes disagree, or the
  defect lives in a layer without parameters);
- no clean twin gives an error or a warning in any format;
- a finding resting on an inferred edge says so in its message and evidence.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from pathlib import Path

import pytest

from bnlint.api import lint
from tests.torch_formats import save_parity_zoo
from tests.zoo.torch_parity import CASES, TRAINING

# What a format does not store, so no reader can reach the defect from it.
NO_GRAPH = {  # state dicts keep names and shapes: no activations, dropouts or poolings
    ("attention_embedding", "BN009"): "Linear(32) and BatchNorm1d(16): shapes disagree",
    ("preact_swapped", "BN001"): "a ReLU has no parameters",
    ("aspp_pooling", "BN002"): "the pooling has no parameters",
    ("dropout_head", "BN008"): "a Dropout has no parameters",
    ("pruned_layer", "BN010"): "conv(12) and BatchNorm2d(16): names and shapes disagree",
}
UNREACHABLE = {
    "state_dict": NO_GRAPH,
    "checkpoint": NO_GRAPH,
    "safetensors": NO_GRAPH,
    # a custom forward: the attention embedding is no nn.Sequential and embed/bn no convention
    "pickled_module": {("attention_embedding", "BN009"): "custom forward"},
}
SETTINGS = {"inference": {}, "training": TRAINING}


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> dict[str, dict[str, str]]:
    """Built once per session, shared by pytest-xdist workers through a lock file."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = root / "torch_parity_zoo"
    with open(root / "torch_parity_zoo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = folder / "manifest.json"
        if not manifest.exists():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                saved = save_parity_zoo(folder)
            manifest.write_text(json.dumps(saved))
        return json.loads(manifest.read_text())


def _findings(path: str, **settings) -> dict[tuple[str, str], object]:
    report = lint(path, **settings)
    model = report.models[0]
    assert model.status == "ok", model.error
    return {(f.code, f.scope or f.node or "<model>"): f for f in report.findings}


def _model_findings(path: str, **settings) -> set[tuple[str, str, str, str]]:
    found = _findings(path, **settings)
    return {
        (code, key, f.severity.label, f.message)
        for (code, key), f in found.items()
        if not code.startswith("BN9")
    }


def _variants() -> list[tuple[str, str]]:
    pairs = []
    for name, case in CASES.items():
        for variant in (name, f"{name}_clean"):
            kinds = ("script", "trace") if case.runs or variant.endswith("_clean") else ("script",)
            pairs += [(variant, kind) for kind in kinds]
    return pairs


@pytest.mark.parametrize(("variant", "kind"), _variants())
def test_static_torchscript_equals_trusted(zoo, variant: str, kind: str) -> None:
    path = zoo[variant][kind]
    for settings in SETTINGS.values():
        static = _model_findings(path, **settings)
        trusted = _model_findings(path, trust_model_code=True, **settings)
        assert static == trusted, (
            f"{variant} ({kind}, {settings}): only static {sorted(static - trusted)}, "
            f"only trusted {sorted(trusted - static)}"
        )


@pytest.mark.parametrize("fmt", ["pt2", "script", "trace", *UNREACHABLE])
def test_each_format_reaches_the_defects_it_stores(zoo, fmt: str) -> None:
    missed, wrongly_found = [], []
    for name, case in CASES.items():
        path = zoo[name].get(fmt)
        if path is None:
            continue  # the network cannot run, so it cannot be exported or traced
        unreachable = UNREACHABLE.get(fmt, {})
        for label in case.defects:
            found = (label.code, label.scope) in _findings(path, **label.settings)
            expected = (name, label.code) not in unreachable
            if found != expected:
                (missed if expected else wrongly_found).append((name, label.code, label.scope))
    assert not missed, f"{fmt} misses {missed}"
    assert not wrongly_found, f"{fmt} now reaches {wrongly_found}: update UNREACHABLE"


@pytest.mark.parametrize("fmt", ["pt2", "script", "trace", *UNREACHABLE])
def test_clean_twins_give_no_error_or_warning(zoo, fmt: str) -> None:
    for name in CASES:
        path = zoo[f"{name}_clean"].get(fmt)
        noisy = [
            (key, f.severity.label, f.message)
            for key, f in _findings(path).items()
            if not key[0].startswith("BN9") and f.severity.label in ("warning", "error")
        ]
        assert not noisy, f"{name}_clean as {fmt}: {noisy}"


def test_findings_on_inferred_edges_say_so(zoo) -> None:
    state = _findings(zoo["unet_double_conv"]["state_dict"])
    bias = state[("BN007", "inc.double_conv.0")]
    assert "inferred from parameter names and shapes" in bias.message
    assert bias.evidence["edge"] == "inferred"
    assert "consecutive Sequential indices" in bias.evidence["inferred_from"]
    pickled = _findings(zoo["dropout_head"]["pickled_module"])
    dropout = pickled[("BN008", "classifier.2")]
    assert "inferred from nn.Sequential order" in dropout.message
    note = next(f for (code, _), f in state.items() if code == "BN901")
    assert note.severity.label == "info"  # what a state dict cannot hold is a note
    assert "BN001" in note.evidence["rules_not_run"]
    # read graphs carry no such words
    script = _findings(zoo["unet_double_conv"]["script"])
    assert "inferred" not in script[("BN007", "inc.double_conv.0")].message


def test_loaders_match_the_format_table(zoo) -> None:
    """What each reader says it holds is what the rules × formats table promises."""
    from bnlint.config import Settings
    from bnlint.engine.formats import PROFILES
    from bnlint.loaders import load_model

    expected_format = {"script": "torchscript", "trace": "torchscript", "checkpoint": "state_dict"}
    for fmt, path in zoo["unet_double_conv"].items():
        for trusted in (False, True) if fmt in ("script", "trace") else (False,):
            facts = load_model(path, Settings(trust_model_code=trusted)).facts
            profile = PROFILES[expected_format.get(fmt, fmt)]
            assert facts.format == profile.name
            assert facts.has_edges == (profile.edges in ("read", "inferred")), fmt
            assert facts.has_edges or facts.has_producer_edges, fmt
            assert bool(facts.inferred) == (profile.edges in ("inferred", "producer")), fmt
            assert facts.has_modules == profile.modules, fmt
            assert (facts.default_phase is not None) == profile.phase, fmt


def test_the_zoo_is_saved_in_every_format(zoo) -> None:
    for name, case in CASES.items():
        formats = set(zoo[name])
        expected = {"script", "state_dict", "checkpoint", "pickled_module", "safetensors"}
        assert formats == expected | ({"pt2", "trace"} if case.runs else set()), name
        assert set(zoo[f"{name}_clean"]) == expected | {"pt2", "trace"}
    assert all(Path(p).is_file() for paths in zoo.values() for p in paths.values())
