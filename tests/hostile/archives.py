"""Crafted PyTorch archives and pickles that attack the reader's resources, not its trust.

- ``memo_bomb``: a TorchScript ``data.pkl`` whose ``LONG_BINPUT 2**31 - 16`` would make
  the C unpickler grow its memo array to 16 GiB.
- ``shared_lists``: a module whose state holds a list shared twice at each of 64 levels
  (2**64 paths, 129 objects).
- ``legacy_storage_lie`` / ``zip_storage_lie``: ``torch.save`` files whose pickle declares a
  32 GiB storage over 16 bytes of data (torch.load allocates what the pickle declares).
- ``member_names``: a ``.pt2`` with member names that climb out, start at ``/`` or hold
  terminal escapes.
- ``stride_bomb``: a ``.pt2`` running variance of 2**25 elements repeating one stored value
  (stride 0), which a naive reader would copy out to 128 MiB (reported as BN010; a read
  of it is refused, see ``tests/test_hardening.py``).
- ``safetensors_lie``: a safetensors header whose offsets run past the file.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path
from typing import Any

from tests.hostile.case import HostileCase, linted, refused


def _script_archive(folder: Path, name: str, data_pkl: bytes) -> Path:
    """A TorchScript-looking archive (``code/``, ``constants.pkl``) around ``data_pkl``."""
    path = folder / name
    prefix = path.stem
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{prefix}/data.pkl", data_pkl)
        archive.writestr(f"{prefix}/code/__torch__.py", "class M(Module):\n  pass\n")
        archive.writestr(f"{prefix}/constants.pkl", pickle.dumps((), protocol=2))
        archive.writestr(f"{prefix}/version", "3\n")
    return path


def memo_bomb(folder: Path) -> HostileCase:
    data = b"\x80\x02N" + b"r" + struct.pack("<I", 2**31 - 16) + b"."
    path = _script_archive(folder, "memo_bomb.pt", data)
    return refused(path, "does not hold a TorchScript module", torch=True, expected_seconds=6)


class _Global:
    """Pickles as a reference to ``module.name`` without that object existing."""

    def __init__(self, module: str, name: str, args: tuple = (), state: Any = None) -> None:
        self.module, self.name, self.args, self.state = module, name, args, state

    def __reduce__(self) -> tuple:
        fake = types.ModuleType(self.module)
        cls = type(self.name, (), {"__module__": self.module, "__qualname__": self.name})
        setattr(fake, self.name, cls)
        sys.modules[self.module] = fake  # pickle checks the reference resolves
        return (cls, self.args, self.state)


def shared_lists(folder: Path) -> HostileCase:
    shared: list[Any] = [0]
    for _ in range(64):
        shared = [shared, shared]
    module = _Global("__torch__", "M", state={"training": False, "blob": shared})
    try:
        data = pickle.dumps(module, protocol=2)
    finally:
        sys.modules.pop("__torch__", None)
    path = _script_archive(folder, "shared_lists.pt", data)
    return linted(path, "BN901", torch=True, expected_seconds=6)


def _storage_pickle(numel: int, legacy: bool = False) -> bytes:
    """The pickle of ``{"bn.running_var": tensor}`` whose storage declares ``numel`` floats."""
    import torch

    storage = object()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if obj is storage:
                pid = ("storage", torch.FloatStorage, "0", "cpu", numel)
                return (*pid, None) if legacy else pid  # legacy ids add view metadata
            return None

    class Tensor:
        def __reduce__(self) -> tuple:
            args = (storage, 0, (numel,), (1,), False, collections.OrderedDict())
            return (torch._utils._rebuild_tensor_v2, args)

    stream = io.BytesIO()
    Pickler(stream, protocol=2).dump({"bn.running_var": Tensor()})
    return stream.getvalue()


def legacy_storage_lie(folder: Path) -> HostileCase:
    data = _storage_pickle(2**33, legacy=True)
    path = folder / "legacy.pt"
    header = b"".join(
        pickle.dumps(value, protocol=2)
        for value in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True})
    )
    keys = pickle.dumps(["0"], protocol=2)
    path.write_bytes(header + data + keys + struct.pack("<q", 4) + bytes(16))
    return refused(path, "declares 34359738368 bytes", torch=True, expected_seconds=6)


def zip_storage_lie(folder: Path) -> HostileCase:
    data = _storage_pickle(2**33)
    path = folder / "zip_lie.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("zip_lie/data.pkl", data)
        archive.writestr("zip_lie/data/0", bytes(16))
        archive.writestr("zip_lie/version", "3\n")
        archive.writestr("zip_lie/byteorder", "little")
    return refused(path, "declares 34359738368 bytes", torch=True, expected_seconds=6)


def member_names(folder: Path) -> HostileCase:
    path = folder / "names.pt2"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("names/models/model.json", "{}")
        archive.writestr("names/archive_format", "pt2")
        for name in (
            "../../escaped.txt",
            "/etc/evil",
            "names/\x1b[2Jclear\nline",
            "names/a\\..\\b",
        ):
            archive.writestr(name, b"x")
    return refused(path, "malformed torch.export program", torch=True, expected_seconds=6)


def stride_bomb(folder: Path, clean_pt2: Path) -> HostileCase:
    path = folder / "stride_bomb.pt2"
    with zipfile.ZipFile(clean_pt2) as source:
        members = {info.filename: source.read(info) for info in source.infolist()}
    config_name = next(n for n in members if n.endswith("model_weights_config.json"))
    config = json.loads(members[config_name])
    for fqn, entry in config["config"].items():
        if fqn.endswith("running_var"):
            meta = entry["tensor_meta"]
            meta["sizes"] = [{"as_int": 2**25}]
            meta["strides"] = [{"as_int": 0}]
    members[config_name] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return linted(path, "BN010", torch=True, expected_seconds=6)


def safetensors_lie(folder: Path) -> HostileCase:
    header = json.dumps(
        {"bn.running_var": {"dtype": "F32", "shape": [2**30], "data_offsets": [0, 2**32]}}
    ).encode()
    path = folder / "lie.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    return refused(path, "not a valid safetensors file")


SIMPLE = {
    "memo_bomb": memo_bomb,
    "shared_lists": shared_lists,
    "legacy_storage_lie": legacy_storage_lie,
    "zip_storage_lie": zip_storage_lie,
    "member_names": member_names,
    "safetensors_lie": safetensors_lie,
}


def _add_pickle_bombs() -> None:
    from tests.hostile import pickle_bombs

    SIMPLE.update(pickle_bombs.CASES)


_add_pickle_bombs()
