"""Findings caused by a constructor point at it (issue 15: PyTorch source locations
pointed at the ``forward`` call, not at ``nn.BatchNorm2d(…, momentum=…)``).

A ``module:factory`` entry point is linted under ``--trust-model-code``; BN015 (momentum),
BN014 (eps) and BN007 (the Conv's bias) must name the line that constructs the layer — an
attribute of a user class, an element of an ``nn.Sequential`` or ``nn.ModuleList`` written
out in place, a layer of a block built by a helper — while findings about data or state
(BN005) keep the ``forward`` call, and a layer made by ``setattr`` keeps it too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
