"""What linting a PyTorch file imports, checked in a fresh subprocess.

The static readers need neither torch nor onnx: a state dict, checkpoint, safetensors,
pickled module, TorchScript or ``.pt2`` file is linted without importing torch, onnx,
onnxruntime or jinja2 (the fold engine, which needs onnx, loads only for ``--verify``).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from torch import nn

from tests.test_import_hygiene import imported_after
from tests.torch_formats import save_all


def test_static_pytorch_path_imports_neither_torch_nor_onnx(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
    import torch

    example = (torch.randn(1, 3, 8, 8),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        formats = ("pt2", "script", "trace", "state_dict", "checkpoint", "pickled_module")
        paths = save_all(model, example, tmp_path, (*formats, "safetensors"))
    files = [str(path) for path in paths.values()]
    modules = imported_after(
        "from bnlint.cli import main\n"
        "try:\n"
        f"    main([*{files!r}, '--format', 'json', '--exit-zero'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "from bnlint.api import lint\n"
        f"report = lint({files!r})\n"
        "assert all(m.status == 'ok' for m in report.models), [m.error for m in report.models]\n"
        "assert any(f.code == 'BN007' for f in report.findings)"
    )
    assert "numpy" in modules and "safetensors" in modules, "sanity: the lint really ran"
    assert not modules & {"torch", "onnx", "onnxruntime", "jinja2"}, sorted(
        modules & {"torch", "onnx", "onnxruntime", "jinja2"}
    )
