"""Live nn.Module input: attributes recorded before anything runs, never mutating the model,
tracer fallbacks, and the runner used by the dynamic checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bnlint.api import lint
from bnlint.config import Settings
from bnlint.loaders import LoadError
from bnlint.loaders.torch import graph_from_module
from tests.torch_formats import buffers_snapshot
from tests.zoo import torch_models

SETTINGS = Settings()


def resnet(train: bool = False) -> tuple[nn.Module, tuple]:
    model = torch_models.build("resnet_small")
    model.train(train)
    return model, (torch_models.example_input("resnet_small"),)


def test_linting_never_changes_the_model() -> None:
    """Tracing in train mode updates BN statistics: bnlint must trace a copy."""
    model, example = resnet(train=True)
    model.layer1[0].bn1.momentum = None  # cumulative average: also moves num_batches_tracked
    model.bn1.weight.requires_grad_(False)
    before = buffers_snapshot(model)
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    report = lint(model, example_inputs=example, verify=True)
    graph = graph_from_module(model, example, SETTINGS)
    runner = graph.runner_factory()
    runner.run({spec.name: example[0].numpy() for spec in runner.inputs})
    after = buffers_snapshot(model)
    assert report.models[0].status == "ok"
    assert before.keys() == after.keys()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags


def test_modes_and_attributes_come_from_the_modules() -> None:
    model, example = resnet()
    model.layer1[0].bn1.train()
    model.layer1[0].bn2.momentum = None
    model.layer2[0].bn1.eps = 1e-3
    model.layer2[1].bn2.weight.requires_grad_(False)
    graph = graph_from_module(model, example, SETTINGS)
    assert graph.facts.format == "module"
    assert graph.facts.mode == "inference" and graph.facts.default_phase == "inference"
    assert graph.facts.has_edges and graph.facts.has_modules
    bns = {bn.scope: bn for bn in graph.nodes_of("batch_norm")}
    assert len(bns) == 10
    mixed = bns["layer1.0.bn1"].attrs
    assert mixed["training"] is True and "mixed modes" in mixed["training_evidence"]
    assert bns["layer1.0.bn2"].attrs["momentum"] is None
    assert bns["layer2.0.bn1"].attrs["eps"] == 1e-3
    assert bns["layer2.1.bn2"].attrs["affine_requires_grad"] == (False, True)
    first = bns["bn1"]
    assert first.attrs["module_class"] == "torch.nn.modules.batchnorm.BatchNorm2d"
    assert first.attrs["num_batches_tracked"] == 3  # fill_bn_statistics ran three steps
    assert first.attrs["sync"] is False and first.source_op == "BatchNorm2d"
    assert first.inputs[1:] == [
        f"bn1.{n}" for n in ("weight", "bias", "running_mean", "running_var")
    ]
    np.testing.assert_array_equal(graph.param("bn1.running_var"), model.bn1.running_var.numpy())
    assert first.location.source_file.endswith("torch_models.py")
    assert first.location.source_line == 112  # x = self.relu(self.bn1(self.conv1(x)))
    assert graph.producer(first.inputs[0]).scope == "conv1"
    assert graph.facts.batch_sizes["x"].value == 1
    assert graph.facts.batch_sizes["x"].source == "example input"


def test_train_mode_model_defaults_to_training_phase() -> None:
    model, example = resnet(train=True)
    report = lint(model, example_inputs=example)
    assert report.models[0].phase == "training"
    assert not any(f.code == "BN003" for f in report.findings)


def test_input_shape_builds_example_inputs() -> None:
    model, _ = resnet()
    graph = graph_from_module(model, None, Settings(input_shapes={"x": (2, 3, 16, 16)}))
    assert graph.facts.has_edges
    assert graph.facts.batch_sizes["x"].value == 2
    assert graph.facts.batch_sizes["x"].source == "--input-shape"


def test_without_inputs_the_module_tree_is_kept() -> None:
    model, _ = resnet()
    report = lint(model)
    graph = graph_from_module(model, None, SETTINGS)
    assert not graph.facts.has_edges
    assert len(graph.nodes_of("batch_norm")) == 10
    partial = [f for f in report.findings if f.code == "BN901"]
    assert len(partial) == 1 and "no example inputs" in partial[0].message
    assert "BN001" in partial[0].evidence["rules_not_run"]


def test_fx_fallback_when_export_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise RuntimeError("export refused for the test")

    monkeypatch.setattr(torch.export, "export", refuse)
    model, example = resnet()
    model.layer1[0].bn1.train()
    graph = graph_from_module(model, example, SETTINGS)
    assert graph.facts.has_edges
    bns = {bn.scope: bn for bn in graph.nodes_of("batch_norm")}
    assert bns["layer1.0.bn1"].attrs["training"] is True
    assert graph.producer(bns["bn1"].inputs[0]).op == "conv"
    report = lint(model, example_inputs=example, select=["BN003", "BN011"])
    assert {(f.code, f.scope) for f in report.findings if f.code == "BN003"} == {
        ("BN003", "layer1.0.bn1")
    }


def test_module_tree_when_no_tracer_works(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise RuntimeError("cannot trace")

    monkeypatch.setattr(torch.export, "export", refuse)
    monkeypatch.setattr(torch.fx, "symbolic_trace", refuse)
    model, example = resnet()
    report = lint(model, example_inputs=example)
    [partial] = [f for f in report.findings if f.code == "BN901"]
    assert "could not be traced" in partial.message and "torch.export" in partial.message
    assert "BN001" in partial.evidence["rules_not_run"]


def test_runner_runs_a_private_copy_in_the_recorded_modes() -> None:
    import copy

    model, example = resnet(train=True)
    buffers = {name: value.clone() for name, value in model.state_dict().items()}
    graph = graph_from_module(model, example, SETTINGS)
    runner = graph.runner_factory()
    [output] = runner.run({runner.inputs[0].name: example[0].numpy()})
    with torch.no_grad():
        expected = copy.deepcopy(model)(example[0]).numpy()  # train mode: batch statistics
        in_eval = copy.deepcopy(model).eval()(example[0]).numpy()
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(output, in_eval, rtol=1e-3), "sanity: the two modes differ here"
    assert graph.source.torch_module is model and model.training
    for name, value in model.state_dict().items():
        assert torch.equal(value, buffers[name]), f"{name} changed: the runner touched the model"


def test_not_a_module_is_a_load_error() -> None:
    with pytest.raises(LoadError, match=r"expected a torch\.nn\.Module"):
        graph_from_module(object(), None, SETTINGS)
