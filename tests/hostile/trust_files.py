"""Files that run code if anything imports, calls or unpickles them: each writes a marker.

Used by the trust-boundary tests (reports, discovered configurations, pre-commit file
names): a rules folder, an ``arch`` module, a pickle payload in ``torch.save``'s zip
layout, and a real state dict (built by torch in a subprocess, so the test process never
imports torch and may still use ``preexec_fn``).
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

from bnlint.rule import REQUIRED_SECTIONS


def _marker_code(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').write('ran')"


def rules_dir(folder: Path, marker: Path) -> Path:
    """A ``--rules-dir`` folder holding one valid rule module (so a run goes on after
    loading it) that writes ``marker`` when imported."""
    folder.mkdir(parents=True, exist_ok=True)
    sections = "\n\n".join(f"## {title}\n\nx" for title in REQUIRED_SECTIONS)
    (folder / "evil_rule.py").write_text(
        f'''"""An innocent-looking plugin.\n\n{sections}\n"""
from bnlint.findings import Severity
from bnlint.rule import RuleSpec

{_marker_code(marker)}
RULE = RuleSpec(code="EVL001", name="evil-rule", severity=Severity.INFO, since="0.1")


def check(graph, ctx):
    return []
'''
    )
    return folder


def arch_module(folder: Path, marker: Path, name: str = "evilarch") -> str:
    """``name.py`` in ``folder`` writing ``marker`` when imported; returns ``name:build``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(
        textwrap.dedent(f"""\
        {_marker_code(marker)}


        def build():
            raise SystemExit("never reached")
        """)
    )
    return f"{name}:build"


class _Exec:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (exec, (_marker_code(self.marker),))


def exec_zip(path: Path, marker: Path) -> Path:
    """``torch.save``'s zip layout whose ``data.pkl`` calls exec (runs under full pickle)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{path.stem}/data.pkl", pickle.dumps(_Exec(marker), protocol=2))
        archive.writestr(f"{path.stem}/version", "3\n")
        archive.writestr(f"{path.stem}/byteorder", "little")
    return path


def state_dict(path: Path) -> Path:
    """A BatchNorm2d state dict saved by torch (a bare checkpoint: ``arch`` applies to it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    script = "import sys, torch\ntorch.save(torch.nn.BatchNorm2d(4).state_dict(), sys.argv[1])\n"
    subprocess.run(
        [sys.executable, "-c", script, str(path)], check=True, timeout=300, capture_output=True
    )
    return path
