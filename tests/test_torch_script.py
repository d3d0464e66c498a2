"""Static TorchScript: the archive's code parsed, checked and interpreted, never executed."""

from __future__ import annotations

import pickle
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from bnlint.config import Settings
from bnlint.loaders import LoadError, load_model
from bnlint.loaders.torch_schemas import _SCHEMAS, argument_names


def load(path: Path, **settings) -> object:
    return load_model(str(path), Settings(**settings))


def _rewrite(source: Path, target: Path, edit) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info.filename, edit(info.filename, old.read(info)))
    return target


@pytest.fixture(scope="module")
def scripted(tmp_path_factory) -> Path:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU()).eval()
    path = tmp_path_factory.mktemp("script") / "model.pt"
    torch.jit.script(model).save(str(path))
    return path


HOSTILE_SOURCES = {
    "dunder_import": ("__import__('os').system('true')", "'__import__'"),
    "class_attribute": ("_0 = self.__class__", "'__class__'"),
    "getattr_dunder": ('_0 = getattr(self, "__dict__")', "getattr(…, '__dict__')"),
    "globals_call": ("_0 = eval('1')", "eval()"),
    "lambda": ("_0 = lambda: 0", "Lambda is not in the TorchScript subset"),
    "binary_operator": ("_0 = input + input", "BinOp is not in the TorchScript subset"),
    "try_statement": ("try:\n      pass\n    except Exception:\n      pass", "Try"),
    "import": ("import os", "an import of anything but torch"),
    "comprehension": ("_0 = [i for i in range(3)]", "ListComp"),
    "subclasses": ("_0 = torch.__class__.__subclasses__", "is not in the TorchScript subset"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_SOURCES))
def test_constructs_outside_the_subset_refuse_the_archive(scripted, tmp_path, name) -> None:
    statement, problem = HOSTILE_SOURCES[name]

    def edit(member: str, data: bytes) -> bytes:  # the Sequential's forward
        text = data.decode() if member.endswith(".py") else ""
        if "class Sequential(Module)" in text:
            marker = "    input: Tensor) -> Tensor:\n"
            return text.replace(marker, marker + "    " + statement + "\n", 1).encode()
        return data

    path = _rewrite(scripted, tmp_path / f"{name}.pt", edit)
    with pytest.raises(LoadError) as refused:
        load(path)
    assert "/container" in refused.value.problem and ".py, line" in refused.value.problem
    assert problem in refused.value.problem, refused.value.problem
    assert "refusing the archive" in refused.value.problem


def test_calls_that_fan_out_at_every_level_stop_at_the_step_budget(tmp_path, monkeypatch) -> None:
    """30 levels, each calling the next module twice: 2**30 calls through 31 objects."""
    import bnlint.loaders.torch_script_eval as script_eval
    from tests.hostile.archives import _Global

    module = _Global("__torch__", "Leaf", state={"training": False})
    for _ in range(30):
        module = _Global("__torch__", "M", state={"training": False, "a": module, "b": module})
    try:
        data = pickle.dumps(module, protocol=2)
    finally:
        sys.modules.pop("__torch__", None)
    code = (
        "class Leaf(Module):\n  def forward(self, x: Tensor) -> Tensor:\n    return x\n"
        "class M(Module):\n  def forward(self, x: Tensor) -> Tensor:\n"
        "    a = self.a\n    b = self.b\n    _0 = (a).forward(x, )\n    return (b).forward(_0, )\n"
    )
    path = tmp_path / "fan_out.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("fan_out/data.pkl", data)
        archive.writestr("fan_out/code/__torch__.py", code)
        archive.writestr("fan_out/constants.pkl", pickle.dumps((), protocol=2))
    monkeypatch.setattr(script_eval, "MAX_STEPS", 20_000)
    with pytest.raises(LoadError, match="takes more than 20000 steps"):
        load(path)


def test_a_branch_on_data_is_one_opaque_node(tmp_path) -> None:
    class Gate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.bn(self.conv(x))
            if bool(x.sum() > 0):
                y = torch.relu(y)
            return y

    path = tmp_path / "gate.pt"
    torch.jit.script(Gate().eval()).save(str(path))
    for trusted in (False, True):
        graph = load(path, trust_model_code=trusted)
        [branch] = graph.nodes_of("control_flow")
        assert branch.name == "cond" and graph.facts.unsupported == ["TorchScript prim::If"]
        assert any("opaque" in note for note in graph.facts.partial)
        [bn] = graph.nodes_of("batch_norm")
        assert graph.producer(bn.inputs[0]).scope == "conv"


def test_a_trace_keeps_the_training_flag_it_was_traced_with(tmp_path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (torch.randn(2, 3, 8, 8),), check_trace=False)
    traced.eval()  # the flag on the module says eval; the traced code says training=True
    traced.save(str(path := tmp_path / "traced.pt"))
    for trusted in (False, True):
        [bn] = load(path, trust_model_code=trusted).nodes_of("batch_norm")
        assert bn.attrs["training"] is True
        assert "baked" in bn.attrs["training_evidence"]


def test_schema_names_match_the_installed_torch() -> None:
    """Each entry is the positional argument list of one overload of ``aten::<op>``."""
    for op in _SCHEMAS:
        positional, _ = argument_names(op)
        overloads = torch._C._jit_get_schemas_for_operator(f"aten::{op}")
        found = [
            (
                tuple(a.name for a in s.arguments if not a.kwarg_only),
                tuple(a.name for a in s.arguments if a.kwarg_only and a.name != "out"),
            )
            for s in overloads
        ]
        assert any(p[: len(positional)] == positional for p, _ in found), (op, found)


def test_every_operator_the_mapping_reads_by_name_has_a_schema() -> None:
    from bnlint.loaders import torch_ops

    named = {*torch_ops.BATCH_NORM, "conv2d", "conv_transpose2d", "_convolution", "linear"}
    named |= {"dropout", "layer_norm", "group_norm", "cat", "transpose", "permute", "flatten"}
    named |= {"softmax", "leaky_relu", "hardtanh", "gelu", "adaptive_avg_pool2d", "max_pool2d"}
    missing = sorted(op for op in named if not argument_names(op)[0])
    assert not missing
