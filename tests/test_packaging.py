"""The wheel ships rules/ and templates/ as bnlint/rules and bnlint/templates, nothing generic."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import lend_test_dependencies

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (built,) = out.glob("bnlint-*.whl")
    return built


def test_wheel_layout(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "bnlint/rules/__init__.py" in names
    assert "bnlint/rules/bn003_training_mode_at_inference.py" in names
    assert "bnlint/templates/__init__.py" in names
    assert "bnlint/schemas/report.schema.json" in names
    rule_files = {Path(n).name for n in names if n.startswith("bnlint/rules/")}
    assert rule_files >= {p.name for p in (REPO / "rules").glob("bn*.py")}
    template_files = {Path(n).name for n in names if n.startswith("bnlint/templates/")}
    assert template_files >= {p.name for p in (REPO / "templates").iterdir() if p.is_file()}
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"bnlint", next(t for t in top_level if t.endswith(".dist-info"))}


def test_wheel_installs_into_a_fresh_venv_and_runs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    site = lend_test_dependencies(python)  # bnlint from the tag/wheel, the rest from here
    result = subprocess.run(
        [str(venv / "bin" / "bnlint"), "rules"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "BN003  batchnorm-training-mode-at-inference" in result.stdout
    where = subprocess.run(
        [str(python), "-c", "import bnlint.rules, bnlint.templates; print(bnlint.rules.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert where.stdout.strip().startswith(str(site)), where
    generic = subprocess.run(
        [str(python), "-c", "import rules"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert generic.returncode != 0 and "No module named 'rules'" in generic.stderr
