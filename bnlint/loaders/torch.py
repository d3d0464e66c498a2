"""PyTorch front end: the entry points the dispatcher (``bnlint.loaders``) calls.

- ``load_entry_point("pkg.mod:factory" | "file.py:factory")``: runs the user's factory
  (by design, like pytest imports tests) and lints the live module.
- ``load_file(path, kind)``: ``kind`` is ``torch-zip`` or ``pickle`` from content sniffing.
  Zip archives are told apart by their members: ``.pt2`` (``models/*.json``), TorchScript
  (``code/``, ``constants.pkl``) or ``torch.save`` (``data.pkl``). Without
  ``--trust-model-code`` every one of them is read statically, by bnlint alone (no torch
  import: only a legacy pre-1.6 state dict goes through ``torch.load(weights_only=True)``).
- ``graph_from_module(module, example_inputs)``: ``bnlint.lint(nn.Module, example_inputs=…)``.

torch is imported lazily; without it, entry points, trusted loads and legacy state dicts
are one clear LoadError and the static readers still work.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnlint.graph import ModelGraph
from bnlint.loaders.files import LoadError, require_torch


def load_entry_point(target: str, settings: Any) -> ModelGraph:
    require_torch(target)
    from bnlint.loaders.torch_entry import build_from_entry_point
    from bnlint.loaders.torch_live import graph_from_module as from_module

    model, inputs = build_from_entry_point(target, settings)
    return from_module(model, inputs, settings, path=target)


def graph_from_module(module: Any, example_inputs: Any, settings: Any) -> ModelGraph:
    require_torch("<nn.Module>")
    from bnlint.loaders.torch_live import graph_from_module as from_module

    name = f"<{type(module).__name__}>"
    return from_module(module, example_inputs, settings, path=name)


def load_file(path: Path, kind: str, settings: Any) -> ModelGraph:
    trusted = bool(getattr(settings, "trust_model_code", False))
    if trusted or getattr(settings, "arch", None):
        require_torch(path)  # the static readers below need no PyTorch at all
    if kind == "pickle":
        from bnlint.loaders import torch_state

        return torch_state.load(path, settings)
    from bnlint.loaders import pt2, torchscript
    from bnlint.loaders.torch_archive import ZipArchive

    archive = ZipArchive(path)
    if pt2.is_pt2(archive):
        if trusted:
            from bnlint.loaders.torch_trusted import load_pt2

            return load_pt2(path, settings)
        return pt2.load(path, settings, archive)
    if torchscript.is_torchscript(archive):
        if trusted:
            from bnlint.loaders.torch_trusted import load_torchscript

            return load_torchscript(path, settings)
        return torchscript.load(path, settings, archive)
    if archive.has("data.pkl"):
        from bnlint.loaders import torch_state

        return torch_state.load(path, settings)
    raise LoadError(
        path, "a zip archive but not a PyTorch model (no data.pkl, models/*.json or code/)"
    )
