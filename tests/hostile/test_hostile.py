"""Hostile model files never execute: the real CLI, without --trust-model-code.

Each file from ``tests.hostile.generate`` writes a marker file if anything runs code from
it. A control test first proves every payload is live (the naive loader writes the
marker); then ``python -m bnlint`` reads them all and no marker may appear. Every file
must either be refused (status ``error``, one ``bnlint: error:`` line, exit 2 overall) or
read statically (status ``ok``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.hostile.generate import generate

REPO = Path(__file__).resolve().parents[2]
REFUSED = {"pickle", "torch_zip", "torchscript_pickle", "pt2", "pt2_traversal"}
READ_STATICALLY = {"torchscript"}  # a valid TorchScript archive: its tree, never its code
NAIVE_LOADERS = {
    "pickle": "import pickle; pickle.load(open(PATH, 'rb'))",
    "torch_zip": "import torch; torch.load(PATH, weights_only=False)",
    "torchscript": "import torch; torch.jit.load(PATH)",
    "torchscript_pickle": "import pickle, zipfile; z = zipfile.ZipFile(PATH); "
    "pickle.loads(z.read(next(n for n in z.namelist() if n.endswith('data.pkl'))))",
    "pt2": "import torch; torch.export.load(PATH)",
}


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    return generate(tmp_path_factory.mktemp("hostile"))


def test_generator_covers_every_case(hostile) -> None:
    assert set(hostile) == REFUSED | READ_STATICALLY


def test_payloads_are_live(hostile, tmp_path) -> None:
    """Control: a naive loader runs each payload (on copies, so the real markers stay absent)."""
    script = ["import shutil, sys"]
    for name, loader in NAIVE_LOADERS.items():
        path, _ = hostile[name]
        script.append(
            textwrap.dedent(f"""
            PATH = {str(path)!r}
            try:
                {loader}
            except Exception as error:
                print({name!r}, type(error).__name__, file=sys.stderr)
            """)
        )
    # Each payload writes its marker; move them away so the bnlint test sees none.
    script.append(
        "for marker in " + repr([str(hostile[n][1]) for n in NAIVE_LOADERS]) + ":\n"
        f"    shutil.move(marker, {str(tmp_path)!r})"
    )
    result = _run([sys.executable, "-c", "\n".join(script)])
    assert result.returncode == 0, result.stderr
    moved = {p.name for p in tmp_path.iterdir()}
    assert moved == {f"MARKER_{name}" for name in NAIVE_LOADERS}


def test_bnlint_never_executes_them(hostile) -> None:
    paths = [str(path) for path, _ in hostile.values()]
    result = _run([sys.executable, "-m", "bnlint", *paths, "--format", "json"])
    for name, (_, marker) in hostile.items():
        assert not marker.exists(), f"{name}: bnlint executed code from the file"
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    status = {Path(m["path"]).name: m for m in json.loads(result.stdout)["models"]}
    for name, (path, _) in hostile.items():
        model = status[path.name]
        expected = "error" if name in REFUSED else "ok"
        assert model["status"] == expected, f"{name}: {model}"
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == len(REFUSED)
    assert all(line.startswith("bnlint: error: ") for line in errors), errors
    pickles = [status[hostile[n][0].name]["error"] for n in ("pickle", "torch_zip", "pt2")]
    assert all("--trust-model-code" in error for error in pickles), pickles


def test_static_torchscript_read_is_a_real_read(hostile) -> None:
    """The statically read archive still yields its BN layer (untrained statistics)."""
    from bnlint.api import lint

    path, marker = hostile["torchscript"]
    report = lint(str(path))
    assert not marker.exists()
    assert {(f.code, f.scope) for f in report.findings if f.code == "BN005"} == {("BN005", "bn")}
