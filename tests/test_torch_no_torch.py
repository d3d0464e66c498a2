"""Without torch installed, PyTorch files are still read statically (``.pt2``, TorchScript,
``torch.save`` zips, safetensors); what needs torch itself (an entry point, a legacy
pre-1.6 state dict) is one clear error naming the extra.

Runs the CLI in a subprocess where ``import torch`` fails (``sys.modules['torch'] = None``),
as it does when the ``torch`` extra is not installed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn

from tests.torch_formats import save_onnx, save_pt2, save_safetensors, save_script

REPO = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
sys.modules["torch"] = None  # what a missing torch looks like to `import torch`
from bnlint.cli import main
try:
    main(sys.argv[1:])
finally:
    assert sys.modules["torch"] is None, "torch was imported after all"
"""


def test_pytorch_inputs_need_the_torch_extra(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)).eval()
    example = (torch.randn(1, 3, 8, 8),)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    torch.save(model.state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    torch.save(model, tmp_path / "module.pt")
    (tmp_path / "factory.py").write_text("def build():\n    raise SystemExit('never called')\n")
    inputs = {
        "pt2": save_pt2(model, example, tmp_path / "model.pt2"),
        "torchscript": save_script(model, tmp_path / "model.ts"),
        "state_dict": tmp_path / "weights.pt",
        "pickled_module": tmp_path / "module.pt",
        "legacy_state_dict": tmp_path / "legacy.pt",
        "entry_point": f"{tmp_path / 'factory.py'}:build",
        "safetensors": save_safetensors(model, tmp_path / "weights.safetensors"),
        "onnx": save_onnx(model, example, tmp_path / "model.onnx"),
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *map(str, inputs.values()), "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    models = dict(zip(inputs, json.loads(result.stdout)["models"], strict=True))
    for kind in ("legacy_state_dict", "entry_point"):
        assert models[kind]["status"] == "error", kind
        assert "pip install 'bnlint[torch]'" in models[kind]["error"], models[kind]["error"]
    for kind in ("pt2", "torchscript", "state_dict", "pickled_module", "safetensors", "onnx"):
        assert models[kind]["status"] == "ok", (kind, models[kind].get("error"))
    assert result.stderr.count("bnlint: error: ") == 2
