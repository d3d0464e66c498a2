"""Findings caused by a constructor point at it (issue 15: PyTorch source locations
pointed at the ``forward`` call, not at ``nn.BatchNorm2d(…, momentum=…)``).

A ``module:factory`` entry point is linted under ``--trust-model-code``; BN015 (momentum),
BN014 (eps) and BN007 (the Conv's bias) must name the line that constructs the layer — an
attribute of a user class, an element of an ``nn.Sequential`` or ``nn.ModuleList`` written
out in place, a layer of a block built by a helper — while findings about data or state
(BN005) keep the ``forward`` call, and a layer made by ``setattr`` keeps it too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bnlint.findings import Finding, Severity
from bnlint.loaders.torch_definitions import MAX_SOURCE_BYTES, locate_in_repository

SOURCE = """\
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)  # BN007
        self.bn = nn.BatchNorm2d(
            8, momentum=0.99  # BN015
        )
        self.seq = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8, eps=0.5),  # BN014
            nn.ReLU(),
        )
        self.stages = nn.ModuleList([nn.Identity(), Stage()])
        setattr(self, "late", nn.BatchNorm2d(8, momentum=0.95))

    def forward(self, x):
        x = self.seq(torch.relu(self.bn(self.conv(x))))
        x = self.stages[1](self.stages[0](x))
        return self.late(x)


class Stage(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm2d(8, momentum=0.9)  # BN015

    def forward(self, x):
        return self.norm(x)


def build():
    return Block().eval()
"""


def _line(text: str) -> int:
    return next(i for i, line in enumerate(SOURCE.splitlines(), 1) if text in line)


def test_constructor_caused_findings_point_at_the_constructor(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "net.py").write_text(SOURCE)
    monkeypatch.chdir(tmp_path)
    args = ["net.py:build", "--trust-model-code", "--input-shape", "x:1x3x8x8"]
    data = run_cli([*args, "--format", "json"], exit_code=1).json
    where = {
        (f["code"], f["scope"]): (f["location"]["source_file"], f["location"]["source_line"])
        for f in data["models"][0]["findings"]
    }
    assert where[("BN007", "conv")] == ("net.py", _line("# BN007"))
    assert where[("BN015", "bn")] == ("net.py", _line("self.bn = nn.BatchNorm2d("))
    assert where[("BN014", "seq.1")] == ("net.py", _line("# BN014"))
    assert where[("BN015", "stages.1.norm")] == ("net.py", _line("self.norm ="))
    forward = _line("return self.late(x)")
    assert where[("BN015", "late")] == ("net.py", forward), "setattr: the call it is"
    assert where[("BN005", "bn")][1] == _line("x = self.seq(torch.relu("), "data, not code"
    text = run_cli(args, exit_code=1).stdout.splitlines()
    momentum = next(i for i, line in enumerate(text) if " BN015 " in line and ":bn [" in line)
    assert f"  --> net.py:{_line('self.bn = nn.BatchNorm2d(')}" in text[momentum + 1 : momentum + 3]


# A model file records only the forward call (file path and line of the call): the
# statement that built the layer is found by parsing that file inside the repository.
FILE_SOURCE = """\
import torch
from torch import nn


class Stage(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm2d(8, momentum=0.9)  # BN015

    def forward(self, x):
        return self.norm(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)  # BN007
        self.bn = nn.BatchNorm2d(
            8, momentum=0.99  # BN015
        )
        self.seq = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8, eps=0.5),  # BN014
            nn.ReLU(),
        )
        self.stage = Stage()

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        x = self.seq(x)
        return self.stage(x)
"""
FORMATS = ("net.pt2", "net_script.pt", "net_dynamo.onnx")


def _file_line(text: str) -> int:
    return next(i for i, line in enumerate(FILE_SOURCE.splitlines(), 1) if text in line)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding ``models/net.py`` and the model exported three ways."""
    import importlib.util
    import sys

    torch = pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("repo")
    (root / ".git").mkdir()
    (root / "models").mkdir()
    (root / "models" / "net.py").write_text(FILE_SOURCE)
    spec = importlib.util.spec_from_file_location("defsite_net", root / "models" / "net.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["defsite_net"] = module
    try:
        spec.loader.exec_module(module)
        net, x = module.Net().eval(), torch.randn(1, 3, 8, 8)
        torch.export.save(torch.export.export(net, (x,)), root / "net.pt2")
        torch.jit.save(torch.jit.script(net), root / "net_script.pt")
        torch.onnx.export(net, (x,), root / "net_dynamo.onnx", dynamo=True, verbose=False)
    finally:
        del sys.modules["defsite_net"]
    return root


def _where(run_cli, model: Path) -> dict[tuple[str, str], tuple[str, int, int | None]]:
    data = run_cli([model, "--format", "json"], exit_code=1).json
    return {
        (f["code"], f["scope"]): (
            f["location"]["source_file"],
            f["location"]["source_line"],
            f["location"].get("call_line"),
        )
        for f in data["models"][0]["findings"]
    }


@pytest.mark.parametrize("name", FORMATS)
def test_model_file_findings_point_at_the_constructor(run_cli, repository: Path, name) -> None:
    where = _where(run_cli, repository / name)
    norm = ("models/net.py", _file_line("self.norm ="), _file_line("return self.norm(x)"))
    assert where[("BN015", "stage.norm")] == norm
    if name == "net_dynamo.onnx":
        return  # the ONNX optimizer folds the other BatchNorms into their convolutions
    forward = _file_line("x = torch.relu(self.bn(")
    assert where[("BN015", "bn")] == ("models/net.py", _file_line("self.bn = nn."), forward)
    assert where[("BN007", "conv")] == ("models/net.py", _file_line("# BN007"), forward)
    seq = ("models/net.py", _file_line("# BN014"), _file_line("x = self.seq(x)"))
    assert where[("BN014", "seq.1")] == seq
    assert where[("BN005", "bn")] == ("models/net.py", forward, None), "data, not code"


def test_text_and_sarif_name_the_constructor_and_keep_the_call(run_cli, repository) -> None:
    model = repository / "net.pt2"
    constructor, forward = _file_line("self.bn = nn."), _file_line("x = torch.relu(self.bn(")
    text = run_cli([model], exit_code=1).stdout.splitlines()
    momentum = next(i for i, line in enumerate(text) if " BN015 " in line and ":bn [" in line)
    assert f"  --> models/net.py:{constructor}" in text[momentum + 1 : momentum + 3]
    sarif = json.loads(run_cli([model, "--format", "sarif"], exit_code=1).stdout)
    result = next(
        r
        for r in sarif["runs"][0]["results"]
        if r["ruleId"] == "BN015"
        and r["locations"][0]["logicalLocations"][0]["fullyQualifiedName"].endswith("bn")
        and r["locations"][0]["physicalLocation"]["region"]["startLine"] == constructor
    )
    assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "models/net.py"
    )
    call = [r for r in result["relatedLocations"] if r["message"]["text"] == "the forward call"]
    assert call[0]["physicalLocation"]["region"]["startLine"] == forward
    assert call[0]["physicalLocation"]["artifactLocation"]["uri"] == "models/net.py"


def test_moved_source_keeps_the_forward_line(run_cli, repository, tmp_path) -> None:
    """The model copied to another repository, without its source: the recorded file is
    outside that repository (it still exists where it was exported) and is not read."""
    (tmp_path / ".git").mkdir()
    shutil.copy(repository / "net.pt2", tmp_path / "net.pt2")
    where = _where(run_cli, tmp_path / "net.pt2")
    file, line, call = where[("BN015", "bn")]
    assert (line, call) == (_file_line("x = torch.relu(self.bn("), None)
    assert Path(file) == repository / "models" / "net.py"


def _finding(source: str, line: int, scope: str = "bn") -> Finding:
    location = {"file": "net.pt2", "source_file": source, "source_line": line}
    return Finding("BN015", "momentum", Severity.WARNING, "m", scope=scope, location=location)


def test_only_regular_small_files_inside_the_repository_are_read(tmp_path: Path) -> None:
    root, outside = tmp_path / "repo", tmp_path / "outside"
    (root / "models").mkdir(parents=True)
    outside.mkdir()
    forward = _file_line("x = torch.relu(self.bn(")
    (root / "models" / "net.py").write_text(FILE_SOURCE)
    (outside / "net.py").write_text(FILE_SOURCE)
    (root / "models" / "link.py").symlink_to(outside / "net.py")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    os.mkfifo(root / "models" / "fifo.py")
    (root / "models" / "huge.py").write_text(FILE_SOURCE + "\n" * MAX_SOURCE_BYTES)
    (root / "models" / "bad.py").write_bytes(b"\xff\xfe" + FILE_SOURCE.encode())
    (root / "models" / "dir.py").mkdir()
    moved = locate_in_repository([_finding("models/net.py", forward)], root.resolve())
    assert moved[0].location["source_line"] == _file_line("self.bn = nn."), "the control"
    for source in (
        "models/gone.py",
        "../outside/net.py",
        str(outside / "net.py"),
        "models/link.py",
        "linked/net.py",
        "models/fifo.py",
        "models/huge.py",
        "models/bad.py",
        "models/dir.py",
    ):
        finding = _finding(source, forward)
        assert locate_in_repository([finding], root.resolve()) == [finding], source


def test_the_recorded_line_must_use_the_layer(tmp_path: Path) -> None:
    """A line of another method, or of a class that merely has an attribute of that name,
    is not the forward call of the layer: nothing moves."""
    (tmp_path / "net.py").write_text(FILE_SOURCE)
    for scope, line in (
        ("bn", _file_line("x = self.seq(x)")),  # the line does not call self.bn
        ("bn", _file_line("import torch")),  # in no class
        ("norm", _file_line("x = torch.relu(self.bn(")),  # Net has no self.norm
        ("seq.7", _file_line("x = self.seq(x)")),  # no such element: the container
    ):
        moved = locate_in_repository([_finding("net.py", line, scope)], tmp_path.resolve())
        expected = _file_line("self.seq = nn.Sequential(") if scope == "seq.7" else line
        assert moved[0].location["source_line"] == expected, scope
