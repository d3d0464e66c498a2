"""Folding BN into PyTorch Conv / ConvTranspose / Linear modules: pure, group-aware, exact."""

from __future__ import annotations

import copy
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from bnlint.fold import fold_graph
from bnlint.fold.torch_fold import fuse_bn_conv, fuse_conv_bn, fuse_linear_bn
from bnlint.loaders.torch_live import graph_from_module
from tests.fold_models import CRITERION
from tests.zoo import torch_models


def trained_bn(bn: nn.Module, seed: int = 0) -> nn.Module:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        c = bn.num_features
        bn.weight.copy_(torch.rand(c, generator=generator) + 0.5)
        bn.bias.copy_(torch.randn(c, generator=generator) * 0.2)
        bn.running_mean.copy_(torch.randn(c, generator=generator) * 0.5)
        bn.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.3)
    return bn.eval()


def relative_error(reference: torch.Tensor, other: torch.Tensor) -> float:
    return float((reference - other).abs().max() / reference.abs().max())


PAIRS = {
    "conv1d": (lambda: nn.Conv1d(4, 6, 3, padding=1), nn.BatchNorm1d, (2, 4, 9)),
    "conv2d-groups": (
        lambda: nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2),
        nn.BatchNorm2d,
        (2, 4, 7, 7),
    ),
    "conv2d-depthwise": (
        lambda: nn.Conv2d(6, 6, 3, groups=6, bias=False),
        nn.BatchNorm2d,
        (2, 6, 7, 7),
    ),
    "conv3d": (lambda: nn.Conv3d(2, 4, 3, padding=1), nn.BatchNorm3d, (2, 2, 5, 5, 5)),
    "conv-transpose1d": (lambda: nn.ConvTranspose1d(4, 6, 3, stride=2), nn.BatchNorm1d, (2, 4, 5)),
    "conv-transpose2d-grouped": (
        lambda: nn.ConvTranspose2d(8, 4, 2, stride=2, groups=2),
        nn.BatchNorm2d,
        (2, 8, 4, 4),
    ),
    "conv-transpose3d": (
        lambda: nn.ConvTranspose3d(2, 4, 2, stride=2, bias=False),
        nn.BatchNorm3d,
        (2, 2, 3, 3, 3),
    ),
    "linear": (lambda: nn.Linear(12, 6), nn.BatchNorm1d, (3, 12)),
}


@pytest.mark.parametrize("name", list(PAIRS))
def test_fused_module_computes_bn_of_producer(name: str) -> None:
    make, bn_class, shape = PAIRS[name]
    torch.manual_seed(0)
    producer = make().eval()
    bn = trained_bn(
        bn_class(
            producer.weight.shape[1] * producer.groups
            if isinstance(producer, nn.modules.conv._ConvTransposeNd)
            else producer.weight.shape[0]
        )
    )
    before = copy.deepcopy(producer.state_dict()), copy.deepcopy(bn.state_dict())
    fused = fuse_linear_bn(producer, bn) if name == "linear" else fuse_conv_bn(producer, bn)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert relative_error(bn(producer(x)), fused(x)) <= CRITERION
    for original, saved in zip((producer, bn), before, strict=True):
        for key, value in original.state_dict().items():
            assert torch.equal(value, saved[key]), f"{key} was mutated"
    assert fused.weight.data_ptr() != producer.weight.data_ptr()


def test_forward_fold_into_unpadded_conv() -> None:
    torch.manual_seed(0)
    bn, conv = trained_bn(nn.BatchNorm2d(4)), nn.Conv2d(4, 6, 3, stride=2).eval()
    x = torch.randn(2, 4, 9, 9)
    with torch.no_grad():
        assert relative_error(conv(bn(x)), fuse_bn_conv(bn, conv)(x)) <= CRITERION
    with pytest.raises(ValueError, match="without padding"):
        fuse_bn_conv(bn, nn.Conv2d(4, 6, 3, padding=1))


def test_training_mode_and_missing_statistics_are_refused() -> None:
    conv = nn.Conv2d(3, 4, 3).eval()
    with pytest.raises(ValueError, match="training mode"):
        fuse_conv_bn(conv, nn.BatchNorm2d(4).train())
    with pytest.raises(ValueError, match="no running statistics"):
        fuse_conv_bn(conv, nn.BatchNorm2d(4, track_running_stats=False).eval())


@pytest.mark.parametrize("name", ["resnet_small", "convtranspose_decoder", "mlp_bn"])
def test_zoo_models_fold_and_verify_with_torch(name: str) -> None:
    model = torch_models.build(name)
    saved = copy.deepcopy(model.state_dict())
    graph = graph_from_module(model, (torch_models.example_input(name),), SimpleNamespace())
    result = fold_graph(graph)
    assert result.verification.ok and result.verification.numeric_ran
    assert all(record.status == "folded" for record in result.records)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in result.folded.modules())
    x = torch_models.example_input(name, seed=3)
    with torch.no_grad():
        assert relative_error(model(x), result.folded(x)) <= CRITERION
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), f"the user's {key} changed"


def test_train_mode_bn_module_is_left_alone() -> None:
    model = torch_models.build("resnet_small")
    model.layer1[0].bn1.train()
    graph = graph_from_module(
        model, (torch_models.example_input("resnet_small"),), SimpleNamespace()
    )
    result = fold_graph(graph)
    by_bn = {record.bn.scope: record for record in result.records}
    assert by_bn["layer1.0.bn1"].status == "not-folded"
    assert by_bn["layer1.0.bn1"].reason_code == "training-mode"
    assert isinstance(result.folded.layer1[0].bn1, nn.BatchNorm2d)
    assert by_bn["bn1"].status == "folded"


FACTORY = """
    import torch
    from torch import nn

    def make():
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        with torch.no_grad():
            model[1].running_var.uniform_(0.5, 2.0)
            model[1].running_mean.normal_()
        return model.eval()

    example_inputs = (torch.randn(1, 3, 8, 8),)
"""


@pytest.mark.parametrize("suffix", [".pt2", ".pt"])
def test_cli_folds_a_module_factory(tmp_path: Path, run_cli, suffix: str) -> None:
    (tmp_path / "user_model.py").write_text(textwrap.dedent(FACTORY))
    target = tmp_path / f"folded{suffix}"
    result = run_cli(["fold", f"{tmp_path / 'user_model.py'}:make", "-o", target])
    assert "folded-correctly  Conv2d 0" in result.stdout
    assert target.exists()
    if suffix == ".pt":
        state = torch.load(target, weights_only=True)
        assert "1.running_var" not in state and "0.bias" in state
    else:
        program = torch.export.load(str(target))
        assert not any("batch_norm" in str(node.target) for node in program.graph.nodes)
    sys.modules.pop("user_model", None)


def test_a_trusted_pt2_program_is_refused_with_the_true_reason(tmp_path: Path, run_cli) -> None:
    """torch.export flattens modules into parameter holders: no module fold applies, and
    the reason says so (issue 13 item 6: it used to say 'training mode')."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()).eval()
    program = torch.export.export(model, (torch.randn(1, 3, 8, 8),))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    result = run_cli(
        [
            "fold",
            tmp_path / "m.pt2",
            "-o",
            tmp_path / "f.pt2",
            "--trust-model-code",
            "--format",
            "json",
        ]
    )
    (row,) = result.json["models"][0]["verification"]["bns"]
    assert row["verdict"] == "not-folded" and row["reason_code"] == "not-a-module"
    assert "torch.export flattens" in row["reason"] and "training" not in row["reason"]
