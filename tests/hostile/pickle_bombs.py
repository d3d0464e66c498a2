"""Pickles and archives that attack the static PyTorch readers' time and memory (issue 12,
items 7 and 8), and TorchScript code outside the printer's subset (issue 14).

- ``tuple_key_dict`` / ``tuple_key_ordered``: a dict (plain in a ``torch.save`` file, and an
  ``OrderedDict`` in a TorchScript module's state) whose key is a tuple shared twice at each
  of 64 levels: 129 objects, but ``hash`` visits 2**64 elements.
- ``shared_list_root``: a TorchScript ``data.pkl`` whose root is a list shared twice at each
  of 60 levels; the error message once ``repr``-ed it.
- ``empty_sets_stored`` / ``empty_sets_deflated``: a ``torch.save`` ``data.pkl`` of 4 Mi
  ``EMPTY_SET`` opcodes (1.2 GB of sets; stored it is a 4 MB file, deflated 4 KB), which the
  old reader built in full before counting, and ``torch.load`` then built again.
- ``pt2_nodes_deflated`` / ``pt2_nodes_stored``: a ``.pt2`` whose ``model.json`` lists
  millions of empty nodes (15 MiB of JSON, just under the old 16 MiB floor, in a 16 KB
  file: 650 MB of objects before the node limit was checked).
- ``script_import`` / ``script_dunder`` / ``script_lambda``: a real scripted module whose
  TorchScript source gains ``__import__('os').system(…)``, ``getattr(self, "__class__")``,
  or a lambda; each would write the marker if anything ran it.

Built by bytes (a dict keyed by such a tuple cannot even be created in this process).
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

from tests.hostile.case import HostileCase, refused

LEVELS = 64
EMPTY_SETS = 4 * 1024**2


def _torch_save_zip(path: Path, data_pkl: bytes, compression: int = zipfile.ZIP_STORED) -> Path:
    prefix = path.stem
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr(f"{prefix}/data.pkl", data_pkl)
        archive.writestr(f"{prefix}/version", "3\n")
        archive.writestr(f"{prefix}/byteorder", "little")
    return path


def _shared_tuple(levels: int) -> bytes:
    """Opcodes leaving t_levels on the stack, t_i = (t_(i-1), t_(i-1)), memo index i."""
    out = bytearray(b"K\x00\x85q\x00")  # BININT1 0, TUPLE1, BINPUT 0
    for level in range(1, levels + 1):
        previous = bytes([level - 1])  # POP the last tuple, then two references to it
        out += b"0h" + previous + b"h" + previous + b"\x86q" + bytes([level])
    return bytes(out)


def tuple_key_dict(folder: Path) -> HostileCase:
    data = b"\x80\x02}" + _shared_tuple(LEVELS) + b"K\x01s."  # {t64: 1}
    path = _torch_save_zip(folder / "tuple_key.pt", data)
    return refused(path, "holds more than 1000 elements", expected_seconds=3)


def tuple_key_ordered(folder: Path) -> HostileCase:
    """A TorchScript module whose state holds ``OrderedDict({t64: 1})`` (REDUCE + SETITEMS
    store the pair unhashed; turning it into a dict hashed the key)."""
    from tests.hostile.archives import _script_archive

    def text(value: str) -> bytes:
        return b"X" + struct.pack("<I", len(value)) + value.encode()

    ordered = b"ccollections\nOrderedDict\n)R(" + _shared_tuple(LEVELS) + b"K\x01u"
    state = b"}(" + text("training") + b"\x89" + text("x") + ordered + b"u"
    data = b"\x80\x02c__torch__\nM\n)\x81" + state + b"b."
    path = _script_archive(folder, "tuple_key_ordered.pt", data)
    return refused(path, "holds more than 1000 elements", expected_seconds=3)


def shared_list_root(folder: Path) -> HostileCase:
    from tests.hostile.archives import _script_archive

    shared: list = [0]
    for _ in range(60):
        shared = [shared, shared]
    path = _script_archive(folder, "shared_root.pt", pickle.dumps(shared, protocol=2))
    return refused(path, "it holds a list of 2 items", expected_seconds=3)


def _empty_sets() -> bytes:
    return b"\x80\x02" + b"\x8f" * EMPTY_SETS + b"."


def empty_sets_stored(folder: Path) -> HostileCase:
    path = _torch_save_zip(folder / "sets.pt", _empty_sets())
    return refused(path, "would build more than 128 MiB of objects", expected_seconds=4)


def empty_sets_deflated(folder: Path) -> HostileCase:
    path = _torch_save_zip(folder / "sets_deflated.pt", _empty_sets(), zipfile.ZIP_DEFLATED)
    return refused(path, "refusing a likely zip bomb", expected_seconds=3)


def _pt2(path: Path, nodes: int, compression: int) -> Path:
    program = b'{"graph_module": {"signature": {}, "graph": {"nodes": ['
    program += b"{}, " * nodes + b"{}]}}}"
    with zipfile.ZipFile(path, "w", compression) as archive:
        archive.writestr("m/archive_format", "pt2")
        archive.writestr("m/models/model.json", program)
    return path


def pt2_nodes_deflated(folder: Path) -> HostileCase:
    path = _pt2(folder / "nodes.pt2", 15 * 1024**2 // 4, zipfile.ZIP_DEFLATED)  # < 16 MiB
    return refused(path, "refusing a likely zip bomb", expected_seconds=3)


def pt2_nodes_stored(folder: Path) -> HostileCase:
    path = _pt2(folder / "nodes_stored.pt2", 1024**2, zipfile.ZIP_STORED)
    return refused(path, "refusing to parse it", expected_seconds=3)


def _scripted_with(folder: Path, name: str, statement: str) -> HostileCase:
    import torch
    from torch import nn

    clean = folder / "clean.pt"
    torch.jit.script(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval()).save(str(clean))
    marker = folder / "MARKER"
    path = folder / name
    with zipfile.ZipFile(clean) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            text = data.decode() if info.filename.endswith(".py") else ""
            if "class Sequential(Module)" in text:
                line = statement.format(marker=str(marker))
                anchor = "    input: Tensor) -> Tensor:\n"
                data = text.replace(anchor, f"{anchor}    {line}\n", 1).encode()
            new.writestr(info, data)
    clean.unlink()
    case = refused(path, "is not in the TorchScript subset", expected_seconds=3)
    case.marker = marker
    return case


def script_import(folder: Path) -> HostileCase:
    return _scripted_with(folder, "import.pt", "_0 = __import__('os').system('touch {marker}')")


def script_dunder(folder: Path) -> HostileCase:
    return _scripted_with(
        folder, "dunder.pt", "_0 = getattr(self, '__class__').__init__.__globals__"
    )


def script_lambda(folder: Path) -> HostileCase:
    return _scripted_with(folder, "lambda.pt", "_0 = (lambda: open('{marker}', 'w'))()")


CASES: dict[str, Callable[[Path], HostileCase]] = {
    "tuple_key_dict": tuple_key_dict,
    "tuple_key_ordered": tuple_key_ordered,
    "shared_list_root": shared_list_root,
    "empty_sets_stored": empty_sets_stored,
    "empty_sets_deflated": empty_sets_deflated,
    "pt2_nodes_deflated": pt2_nodes_deflated,
    "pt2_nodes_stored": pt2_nodes_stored,
    "script_import": script_import,
    "script_dunder": script_dunder,
    "script_lambda": script_lambda,
}
