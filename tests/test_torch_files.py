"""PyTorch files: .pt2 and TorchScript read statically, trusted loads, state dicts,
checkpoints, safetensors, pickled modules, and detection by content."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from bnlint.config import Settings
from bnlint.loaders import LoadError, load_model
from tests.torch_formats import save_all, save_onnx
from tests.zoo import torch_models


def small_model() -> nn.Module:
    """ResNetSmall with distinctive BN attributes to find again in every format."""
    model = torch_models.build("resnet_small")
    model.bn1.eps = 1e-3
    model.layer1[0].bn2.momentum = None
    model.layer2[1].bn2.weight.requires_grad_(False)
    model.layer1[0].bn1.train()
    return model


EXAMPLE = (torch_models.example_input("resnet_small"),)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    return save_all(small_model(), EXAMPLE, tmp_path_factory.mktemp("formats"))


def load(path: Path, **settings) -> object:
    return load_model(str(path), Settings(**settings))


def bns(graph) -> dict[str, object]:
    return {bn.scope: bn for bn in graph.nodes_of("batch_norm")}


def test_pt2_is_read_statically(files) -> None:
    graph = load(files["pt2"])
    facts = graph.facts
    assert (facts.format, facts.default_phase, facts.mode) == ("pt2", "inference", "training")
    assert facts.has_edges and facts.has_modules and facts.producer.startswith("torch ")
    layers = bns(graph)
    assert len(layers) == 10
    assert layers["bn1"].attrs["eps"] == 1e-3
    assert layers["layer1.0.bn2"].attrs["momentum"] == 0.0  # momentum=None exports as 0.0
    assert layers["layer1.0.bn1"].attrs["training"] is True
    assert layers["layer1.0.bn1"].attrs["training_evidence"] == "exported with training=True"
    assert layers["layer2.1.bn2"].attrs["affine_requires_grad"] == (False, True)
    assert layers["bn1"].attrs["module_class"] == "torch.nn.modules.batchnorm.BatchNorm2d"
    assert layers["bn1"].attrs["num_batches_tracked"] == 3
    expected = small_model().state_dict()
    for name in ("bn1.running_var", "conv1.weight", "fc.bias"):
        np.testing.assert_array_equal(graph.param(name), expected[name].numpy())
    conv = graph.producer(layers["bn1"].inputs[0])
    assert (conv.op, conv.scope, conv.attrs["pads"], conv.attrs["groups"]) == (
        "conv",
        "conv1",
        [1, 1, 1, 1],
        1,
    )
    assert layers["bn1"].location.source_line == 112
    assert graph.facts.batch_sizes["x"].value == 1


def test_pt2_findings_point_at_module_and_source_line(files, run_cli) -> None:
    result = run_cli([files["pt2"], "--select", "BN003", "--format", "json"], exit_code=1)
    [finding] = result.json["models"][0]["findings"]
    assert finding["scope"] == "layer1.0.bn1"
    assert finding["location"]["source_file"].endswith("torch_models.py")
    assert finding["location"]["source_line"] == 54  # out = self.relu(self.bn1(self.conv1(x)))


@pytest.mark.parametrize("kind", ["script", "trace"])
def test_torchscript_is_read_statically(files, kind: str) -> None:
    graph = load(files[kind])
    facts = graph.facts
    assert (facts.format, facts.has_edges, facts.has_modules) == ("torchscript", True, True)
    assert facts.partial == []
    layers = bns(graph)
    conv = graph.producer(layers["layer1.0.bn1"].inputs[0])
    assert (conv.op, conv.scope) == ("conv", "layer1.0.conv1")
    residual = graph.consumers(layers["layer1.0.bn2"].outputs[0])
    assert [node.op for node in residual] == ["add"]
    # the user's line, from the archive's debug information
    assert layers["layer1.0.bn1"].location.source_file.endswith("torch_models.py")
    assert layers["layer1.0.bn1"].location.source_line == 54
    assert len(layers) == 10
    assert layers["bn1"].attrs["eps"] == pytest.approx(1e-3)
    assert layers["layer1.0.bn1"].attrs["training"] is True
    assert layers["layer1.1.bn1"].attrs["training"] is False
    assert layers["layer2.1.bn2"].attrs["affine_requires_grad"] == (False, True)
    expected = small_model().state_dict()
    np.testing.assert_array_equal(
        graph.param("layer2.1.bn2.weight"), expected["layer2.1.bn2.weight"]
    )
    conv = next(n for n in graph.nodes_of("conv") if n.scope == "layer2.0.conv1")
    assert conv.attrs["strides"] == [2, 2] and conv.attrs["pads"] == [1, 1, 1, 1]
    if kind == "script":  # Final constants; traces bake in what momentum=None gave
        assert layers["layer1.0.bn2"].attrs["momentum"] is None
    else:  # the example input's shape is kept in traced archives
        assert facts.batch_sizes["x"].value == 1
        assert graph.shape(layers["layer2.0.bn1"].inputs[0]) == (1, 32, 16, 16)


@pytest.mark.filterwarnings("ignore:Lite Interpreter is deprecated:DeprecationWarning")
def test_lite_interpreter_archive(tmp_path: Path) -> None:
    scripted = torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, eps=1e-3)))
    scripted._save_for_lite_interpreter(str(tmp_path / "mobile.ptl"))
    graph = load(tmp_path / "mobile.ptl")
    [bn] = graph.nodes_of("batch_norm")
    assert (graph.facts.format, bn.scope, bn.attrs["eps"]) == ("torchscript", "1", 1e-3)


@pytest.mark.parametrize("kind", ["script", "trace"])
def test_trusted_torchscript_has_the_graph(files, kind: str) -> None:
    graph = load(files[kind], trust_model_code=True, input_shapes={"x": (2, 3, 32, 32)})
    assert graph.facts.has_edges
    layers = bns(graph)
    assert len(layers) == 10 and layers["layer1.0.bn1"].attrs["training"] is True
    assert graph.producer(layers["bn1"].inputs[0]).scope == "conv1"
    runner = graph.runner_factory()
    [output] = runner.run({runner.inputs[0].name: np.zeros((2, 3, 32, 32), np.float32)})
    assert output.shape == (2, 10)


def test_trusted_pt2_matches_static(files) -> None:
    static, trusted = load(files["pt2"]), load(files["pt2"], trust_model_code=True)
    keys = ["eps", "momentum", "training", "affine_requires_grad"]
    assert {s: [bn.attrs[k] for k in keys] for s, bn in bns(static).items()} == {
        s: [bn.attrs[k] for k in keys] for s, bn in bns(trusted).items()
    }
    assert trusted.runner_factory is not None and static.runner_factory is None


@pytest.mark.parametrize("kind", ["state_dict", "safetensors"])
def test_bare_weights_have_bn_layers_and_no_phase(files, kind: str) -> None:
    graph = load(files[kind])
    facts = graph.facts
    assert (facts.default_phase, facts.has_edges, facts.has_modules) == (None, False, False)
    layers = bns(graph)
    assert len(layers) == 10
    assert layers["bn1"].inputs[1:] == [
        f"bn1.{n}" for n in ("weight", "bias", "running_mean", "running_var")
    ]
    assert layers["bn1"].attrs["num_batches_tracked"] == 3
    assert layers["bn1"].attrs["eps_explicit"] is False  # not stored in a state dict


def test_checkpoint_with_prefix_and_arch(tmp_path: Path, monkeypatch) -> None:
    model = small_model()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    path = tmp_path / "epoch3.ckpt"
    torch.save({"epoch": 3, "state_dict": state, "lr": 0.1}, path)
    graph = load(path)
    assert graph.facts.producer == "checkpoint['state_dict']"
    assert "module.bn1" in bns(graph)
    (tmp_path / "arch_models.py").write_text(
        "from tests.zoo.torch_models import ResNetSmall\n"
        "def build():\n    return ResNetSmall().eval()\n"
        "def example_inputs():\n    import torch\n    return (torch.randn(2, 3, 32, 32),)\n"
    )
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    arch = f"{tmp_path / 'arch_models.py'}:build"
    combined = load(path, arch=arch)
    assert combined.facts.format == "state_dict" and combined.facts.has_edges
    layers = bns(combined)
    assert layers["bn1"].attrs["eps"] == 1e-5  # the architecture's, not the checkpoint's
    np.testing.assert_array_equal(combined.param("bn1.running_var"), model.bn1.running_var)
    torch.save({"state_dict": {"other.weight": torch.zeros(3)}}, tmp_path / "wrong.pt")
    with pytest.raises(LoadError, match="does not match --arch"):
        load(tmp_path / "wrong.pt", arch=arch)


def test_pickled_module_is_read_statically(tmp_path: Path) -> None:
    path = tmp_path / "whole.pt"
    torch.save(small_model(), path)
    graph = load(path)
    facts = graph.facts
    assert (facts.format, facts.default_phase, facts.mode) == (
        "pickled_module",
        "inference",
        "inference",
    )
    layers = bns(graph)
    assert len(layers) == 10
    assert layers["bn1"].attrs["eps"] == 1e-3 and layers["layer1.0.bn2"].attrs["momentum"] is None
    assert layers["layer1.0.bn1"].attrs["training"] is True
    assert layers["layer2.1.bn2"].attrs["affine_requires_grad"] == (False, True)
    assert layers["bn1"].attrs["module_class"] == "torch.nn.modules.batchnorm.BatchNorm2d"
    np.testing.assert_array_equal(graph.param("bn1.running_var"), small_model().bn1.running_var)
    # conv1/bn1 by name and channels, downsample.0 -> .1 by nn.Sequential order
    assert graph.producer(layers["bn1"].inputs[0]).scope == "conv1"
    edge = graph.tensors[layers["layer2.0.downsample.1"].inputs[0]]
    assert edge.inferred.startswith("nn.Sequential order")
    trusted = load(path, trust_model_code=True, input_shapes={"x": (1, 3, 32, 32)})
    assert trusted.facts.format == "module" and trusted.facts.has_edges


def test_code_calls_in_a_pickle_stay_refused(tmp_path: Path) -> None:
    from tests.hostile.generate import exec_payload

    path = tmp_path / "evil.pt"
    path.write_bytes(exec_payload(tmp_path / "MARKER"))
    with pytest.raises(LoadError) as refused:
        load(path)
    assert "(builtins.exec)" in refused.value.problem
    assert "--trust-model-code" in refused.value.problem
    assert not (tmp_path / "MARKER").exists()


def test_safetensors_bfloat16_without_torch_tensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    bn = nn.BatchNorm1d(4)
    bn.running_var.fill_(2.5)
    state = {
        f"bn.{k}": v.to(torch.bfloat16) if v.is_floating_point() else v
        for k, v in bn.state_dict().items()
    }
    save_file(state, str(tmp_path / "bf16.safetensors"))
    graph = load(tmp_path / "bf16.safetensors")
    assert graph.dtype("bn.running_var") == "bfloat16"
    np.testing.assert_array_equal(graph.param("bn.running_var"), np.full(4, 2.5, np.float32))


def test_format_is_detected_from_content(files, tmp_path: Path) -> None:
    disguised = tmp_path / "model.pt"
    save_onnx(small_model().eval(), EXAMPLE, disguised)
    assert load(disguised).facts.format == "onnx"
    pt2_named_pth = tmp_path / "program.pth"
    shutil.copy(files["pt2"], pt2_named_pth)
    assert load(pt2_named_pth).facts.format == "pt2"
    script_named_pt2 = tmp_path / "script.pt2"
    shutil.copy(files["script"], script_named_pt2)
    assert load(script_named_pt2).facts.format == "torchscript"


def test_broken_archives_are_one_line_errors(files, tmp_path: Path) -> None:
    other = tmp_path / "data.pt"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("notes/readme.txt", "hello")
    with pytest.raises(LoadError, match="not a PyTorch model"):
        load(other)
    broken = tmp_path / "broken.pt2"
    with zipfile.ZipFile(files["pt2"]) as source, zipfile.ZipFile(broken, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("models/model.json"):
                data = json.dumps({"graph_module": {"graph": {"nodes": 7}}}).encode()
            target.writestr(info, data)
    with pytest.raises(LoadError, match=r"malformed torch\.export program"):
        load(broken)
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(files["pt2"].read_bytes()[:4000])
    with pytest.raises(LoadError):
        load(truncated)
