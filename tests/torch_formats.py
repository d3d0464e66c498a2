"""Save one PyTorch model in every format bnlint reads (for the PyTorch front-end tests).

Every writer works on a deep copy: tracing or exporting a train-mode layer updates its
running statistics, and the formats of one model must hold the same numbers.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

FORMATS = ("pt2", "script", "trace", "state_dict", "safetensors", "onnx")
# what torch.save writes besides a bare state dict: a training checkpoint, a whole module
PICKLES = ("checkpoint", "pickled_module")


def save_pt2(model: nn.Module, example: tuple, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(copy.deepcopy(model), example, strict=False)
        torch.export.save(program, path)
    return path


def save_script(model: nn.Module, path: Path) -> Path:
    torch.jit.script(copy.deepcopy(model)).save(str(path))
    return path


def save_trace(model: nn.Module, example: tuple, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(copy.deepcopy(model), example, check_trace=False).save(str(path))
    return path


def save_onnx(model: nn.Module, example: tuple, path: Path) -> Path:
    """ONNX with BN preserved (TorchScript exporter, PRESERVE, no constant folding)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            copy.deepcopy(model),
            example,
            str(path),
            dynamo=False,
            training=torch.onnx.TrainingMode.PRESERVE,
            do_constant_folding=False,
        )
    return path


def save_state_dict(model: nn.Module, path: Path) -> Path:
    torch.save(model.state_dict(), path)
    return path


def save_checkpoint(model: nn.Module, path: Path) -> Path:
    torch.save({"epoch": 3, "state_dict": model.state_dict(), "lr": 0.1}, path)
    return path


def save_pickled_module(model: nn.Module, path: Path) -> Path:
    torch.save(model, path)  # the whole module: its class is named in the pickle
    return path


def save_safetensors(model: nn.Module, path: Path) -> Path:
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def save_all(
    model: nn.Module, example: tuple, folder: Path, formats: tuple[str, ...] = FORMATS
) -> dict[str, Path]:
    """``{format: path}`` for each requested format, written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    writers: dict[str, Any] = {
        "pt2": lambda: save_pt2(model, example, folder / "model.pt2"),
        "script": lambda: save_script(model, folder / "model.script.pt"),
        "trace": lambda: save_trace(model, example, folder / "model.trace.pt"),
        "state_dict": lambda: save_state_dict(model, folder / "model.state.pt"),
        "checkpoint": lambda: save_checkpoint(model, folder / "model.ckpt"),
        "pickled_module": lambda: save_pickled_module(model, folder / "model.module.pt"),
        "safetensors": lambda: save_safetensors(model, folder / "model.safetensors"),
        "onnx": lambda: save_onnx(model, example, folder / "model.onnx"),
    }
    return {name: writers[name]() for name in formats}


def bn_layers(model: nn.Module) -> list[tuple[str, nn.modules.batchnorm._BatchNorm]]:
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.modules.batchnorm._BatchNorm)
    ]


def buffers_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter and buffer, cloned (compare with ``torch.equal`` for bit identity)."""
    state = {f"param:{k}": v.detach().clone() for k, v in model.named_parameters()}
    state.update({f"buffer:{k}": v.detach().clone() for k, v in model.named_buffers()})
    state.update({f"mode:{k}": torch.tensor(m.training) for k, m in model.named_modules()})
    return state


ZOO_FORMATS = (
    "pt2",
    "script",
    "trace",
    "state_dict",
    "checkpoint",
    "pickled_module",
    "safetensors",
)


def save_parity_zoo(folder: Path, formats: tuple[str, ...] = ZOO_FORMATS) -> dict[str, Any]:
    """Every parity-zoo network (``tests/zoo/torch_parity.py``), defect and clean twin, in
    every format it can be saved in; ``{"<case>[_clean]": {format: path}}``. A network that
    cannot run (the pruned layer) has no ``.pt2``, trace or ONNX."""
    from tests.zoo import torch_models, torch_parity

    saved: dict[str, Any] = {}
    for name, case in torch_parity.CASES.items():
        for variant in (name, f"{name}_clean"):
            runs = case.runs or variant.endswith("_clean")
            wanted = tuple(f for f in formats if runs or f not in ("pt2", "trace", "onnx"))
            model = torch_models.build(variant, fill_stats=runs)
            example = (torch_models.example_input(variant),)
            paths = save_all(model, example, folder / variant, wanted)
            saved[variant] = {fmt: str(path) for fmt, path in paths.items()}
    return saved
