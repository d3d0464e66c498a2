"""Hostile model files: each one writes ``marker`` if anything executes code from it.

- ``pickle``: a raw pickle (``torch.save``'s legacy layout) whose REDUCE calls ``exec``.
- ``torch_zip``: the ``torch.save`` zip layout with that pickle as ``data.pkl``.
- ``torchscript``: a real scripted model whose submodule's TorchScript ``__setstate__``
  creates the marker (``torch.from_file(..., shared=True)``) when ``torch.jit.load`` runs it.
- ``torchscript_pickle``: a TorchScript archive whose ``data.pkl`` is the exec payload.
- ``pt2``: a real ``torch.export`` archive with one weight switched to ``use_pickle`` and
  replaced, like ``sample_inputs/model.pt``, by the exec payload (``torch.export.load``
  unpickles both).
- ``pt2_traversal``: a ``.pt2`` whose weight ``path_name`` climbs out of the archive.

``python -m tests.hostile.generate FOLDER`` writes every hostile case: these payloads,
one file per bad-input class from :mod:`tests.hostile.bad_inputs` and the resource attacks
of :mod:`tests.hostile.archives`, each in its own folder (:func:`all_cases`).
"""

from __future__ import annotations

import json
import pickle
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tests.hostile import archives
from tests.hostile.bad_inputs import BUILDERS
from tests.hostile.case import HostileCase, linted, refused


class _Exec:
    """Pickles as ``exec("open(marker, 'w').write(...)")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('executed')",))


def exec_payload(marker: Path) -> bytes:
    return pickle.dumps(_Exec(marker), protocol=2)


def _rewrite_zip(source: Path, target: Path, replace: Callable[[str, bytes], bytes]) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as new:
        for info in old.infolist():
            new.writestr(info.filename, replace(info.filename, old.read(info)))


class _Payload(nn.Module):
    """Its TorchScript ``__setstate__`` creates ``marker`` on ``torch.jit.load``."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.blob = torch.zeros(4, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.marker, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.marker = state[0]
        self.training = state[1]
        self.blob = torch.from_file(state[0], True, 4, dtype=torch.uint8)


class _Victim(nn.Module):
    def __init__(self, marker: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.payload = _Payload(marker)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.payload(self.bn(self.conv(x)))


def pickle_file(folder: Path, marker: Path) -> Path:
    path = folder / "evil_pickle.pt"
    path.write_bytes(exec_payload(marker))
    return path


def torch_zip(folder: Path, marker: Path) -> Path:
    path = folder / "evil_zip.pth"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("evil_zip/data.pkl", exec_payload(marker))
        archive.writestr("evil_zip/version", "3\n")
        archive.writestr("evil_zip/byteorder", "little")
    return path


def torchscript(folder: Path, marker: Path) -> Path:
    path = folder / "evil_setstate.pt"
    torch.jit.script(_Victim(str(marker)).eval()).save(str(path))
    return path


def torchscript_pickle(folder: Path, marker: Path) -> Path:
    clean = folder / "clean_script.pt"
    torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()).save(str(clean))
    path = folder / "evil_script_pickle.pt"

    def replace(name: str, data: bytes) -> bytes:
        return exec_payload(marker) if name.endswith("/data.pkl") else data

    _rewrite_zip(clean, path, replace)
    clean.unlink()
    return path


def _clean_pt2(folder: Path) -> Path:
    clean = folder / "clean.pt2"
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(model, (torch.randn(1, 3, 8, 8),), strict=False)
        torch.export.save(program, clean)
    return clean


def _pt2_with(
    folder: Path, name: str, edit: Callable[[dict[str, Any]], str | None], payload: bytes | None
) -> Path:
    clean = _clean_pt2(folder)
    path = folder / name
    with zipfile.ZipFile(clean) as archive:
        config_name = next(n for n in archive.namelist() if n.endswith("model_weights_config.json"))
        config = json.loads(archive.read(config_name))
    replaced = edit(config)

    def replace(member: str, data: bytes) -> bytes:
        if member == config_name:
            return json.dumps(config).encode()
        if payload is not None and (
            member.endswith("sample_inputs/model.pt")
            or (replaced is not None and member.endswith(f"/weights/{replaced}"))
        ):
            return payload
        return data

    _rewrite_zip(clean, path, replace)
    clean.unlink()
    return path


def pt2(folder: Path, marker: Path) -> Path:
    def use_pickle(config: dict[str, Any]) -> str:
        entry = next(iter(config["config"].values()))
        entry["use_pickle"] = True
        return entry["path_name"]

    return _pt2_with(folder, "evil_weights.pt2", use_pickle, exec_payload(marker))


def pt2_traversal(folder: Path, marker: Path) -> Path:
    def climb(config: dict[str, Any]) -> None:
        for entry in config["config"].values():
            entry["path_name"] = "../../../../../../etc/passwd"

    return _pt2_with(folder, "evil_traversal.pt2", climb, None)


GENERATORS: dict[str, Callable[[Path, Path], Path]] = {
    "pickle": pickle_file,
    "torch_zip": torch_zip,
    "torchscript": torchscript,
    "torchscript_pickle": torchscript_pickle,
    "pt2": pt2,
    "pt2_traversal": pt2_traversal,
}


def generate(folder: Path) -> dict[str, tuple[Path, Path]]:
    """``{name: (model file, marker path)}``; no marker exists afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    made = {}
    for name, generator in GENERATORS.items():
        marker = folder / f"MARKER_{name}"
        made[name] = (generator(folder, marker), marker)
        if marker.exists():
            raise RuntimeError(f"generating {name} executed its own payload")
    return made


TRUST = "--trust-model-code"
PAYLOAD_EXPECTATIONS: dict[str, Callable[[Path], HostileCase]] = {
    "pickle": lambda path: refused(path, TRUST),
    "torch_zip": lambda path: refused(path, TRUST),
    "torchscript": lambda path: linted(path, "BN005"),
    "torchscript_pickle": lambda path: refused(path, "does not hold a TorchScript module"),
    "pt2": lambda path: refused(path, TRUST),
    "pt2_traversal": lambda path: refused(path, "not a file of this archive"),
}


def all_cases(folder: Path) -> dict[str, HostileCase]:
    """Every hostile case, each in ``folder/<name>/``; no marker exists afterwards."""
    cases: dict[str, HostileCase] = {}

    def place(name: str) -> Path:
        (where := folder / name).mkdir(parents=True)
        return where

    for name, build in BUILDERS.items():
        cases[name] = build(place(name))
    for name, generator in GENERATORS.items():
        where = place(name)
        marker = where / "MARKER"
        case = PAYLOAD_EXPECTATIONS[name](generator(where, marker))
        case.marker, case.torch, case.expected_seconds = marker, True, 6.0
        cases[name] = case
    for name, build in archives.SIMPLE.items():
        cases[name] = build(place(name))
    clean = _clean_pt2(place("stride_bomb"))
    cases["stride_bomb"] = archives.stride_bomb(clean.parent, clean)
    clean.unlink()
    for name, case in cases.items():
        if case.marker is not None and case.marker.exists():
            raise RuntimeError(f"generating {name} executed its own payload")
    return cases


if __name__ == "__main__":
    for name, case in all_cases(Path(sys.argv[1])).items():
        print(f"{name}: {case.outcome} {case.path}")
