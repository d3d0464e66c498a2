"""The pre-commit hooks, for real: this checkout installed as a hook repository.

``pre-commit try-repo`` uses a repository's HEAD plus its tracked changes, not untracked
files, so the test first snapshots the working tree (tracked and new, non-ignored files)
into a temporary git repository. pre-commit then builds the hook's virtual environment
from that snapshot (``pip install .`` of this checkout) and runs the ONNX hook on a bad
and a good model in a temporary project. The PyTorch hook would install a multi-GB torch
into its environment, so only its manifest entry is checked.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pre_commit.clientlib import load_manifest

from tests.zoo import onnx_zoo

REPO = Path(__file__).resolve().parents[1]
GIT_IDENTITY = ["-c", "user.name=bnlint-tests", "-c", "user.email=tests@bnlint.invalid"]


def _git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_manifest_declares_an_onnx_and_a_torch_hook() -> None:
    hooks = {hook["id"]: hook for hook in load_manifest(str(REPO / ".pre-commit-hooks.yaml"))}
    onnx_hook, torch_hook = hooks["bnlint-onnx"], hooks["bnlint-torch"]
    for hook in (onnx_hook, torch_hook):
        assert hook["entry"] == "bnlint" and hook["language"] == "python"
        assert hook["require_serial"] is True
    assert re.search(onnx_hook["files"], "models/resnet.onnx")
    assert not re.search(onnx_hook["files"], "models/resnet.pt")
    assert onnx_hook["additional_dependencies"] == []
    for name in ("a.pt", "a.pth", "a.pt2", "a.ckpt", "a.safetensors"):
        assert re.search(torch_hook["files"], name), name
    assert not re.search(torch_hook["files"], "a.onnx")
    assert torch_hook["additional_dependencies"] == [".[torch]"]


def _snapshot(target: Path) -> Path:
    """The working tree as a one-commit repository (what the lead would commit)."""
    listed = _git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    _git(target, "init", "-q")
    _git(target, "add", "-A")
    _git(target, "commit", "-q", "-m", "snapshot")
    return target


def _try_repo(hook_repo: Path, project: Path, model: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))}
    env["PRE_COMMIT_HOME"] = str(project.parent / "pre-commit-home")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pre_commit",
            "try-repo",
            str(hook_repo),
            "bnlint-onnx",
            "--files",
            model,
            "--color",
            "never",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_onnx_hook_fails_a_bad_model_and_passes_a_good_one(tmp_path: Path) -> None:
    hook_repo = _snapshot(tmp_path / "hook-repo")
    project = tmp_path / "project"
    project.mkdir()
    _git(project, "init", "-q")
    bad = onnx_zoo.opset14_training_mode(project / "models")  # BN003: an error
    good = onnx_zoo.resnet_opset15(project / "models")  # foldable-BN notes only
    _git(project, "add", "-A")

    failed = _try_repo(hook_repo, project, str(bad.relative_to(project)))
    output = failed.stdout + failed.stderr
    assert failed.returncode == 1, output
    assert "bnlint (ONNX)" in output and "Failed" in output
    assert "models/opset14_training_mode.onnx:bn [BatchNormalization] BN003" in output

    passed = _try_repo(hook_repo, project, str(good.relative_to(project)))
    output = passed.stdout + passed.stderr
    assert passed.returncode == 0, output
    assert re.search(r"bnlint \(ONNX\)\.+Passed", output), output
