"""The pre-commit hooks, for real: this checkout installed as a hook repository.

The tests snapshot the working tree (tracked and new, non-ignored files) into a temporary
git repository and point a project's ``.pre-commit-config.yaml`` at it (``repo:`` the
snapshot, ``rev:`` its commit); ``pre-commit run`` then builds the hook's virtual
environment from it (``pip install .`` of this checkout). The snapshot and
``PRE_COMMIT_HOME`` are shared by every test here, whichever xdist worker runs it (made
once under a lock; pre-commit locks its own store), so the environment is built once.
(``pre-commit try-repo`` would build it in a throwaway store on every call.)
The PyTorch hook would install a multi-GB torch into its environment, so only its
manifest entry is checked.

The hostile case (issue 12, item 2): pre-commit appends file names after the hook's
``args``, and a committed file named ``--config=c.onnx`` (whose sibling ``c.onnx`` is a
TOML naming a rules folder of attacker code) must be linted as a file, never read as an
option overriding the ``--config`` pinned in ``args``.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pre_commit.clientlib import load_manifest

from tests.hostile import trust_files
from tests.hostile.runner import run_attack
from tests.zoo import onnx_zoo

REPO = Path(__file__).resolve().parents[2]
GIT_IDENTITY = ["-c", "user.name=bnlint-tests", "-c", "user.email=tests@bnlint.invalid"]
PRE_COMMIT = [sys.executable, "-m", "pre_commit"]


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
        assert hook["entry"] == "bnlint hook" and hook["language"] == "python"
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


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory, worker_id: str) -> tuple[Path, Path]:
    """(snapshot repository, PRE_COMMIT_HOME), shared by every xdist worker of this run."""
    base = tmp_path_factory.getbasetemp()
    shared = (base if worker_id == "master" else base.parent) / "bnlint-pre-commit"
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        repo = shared / "hook-repo"
        if not (repo / ".git").exists():
            _snapshot(repo)
    return repo, shared / "home"


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))}
    env["PRE_COMMIT_HOME"] = str(home)
    return env


def _project(folder: Path, repo: Path, args: str = "") -> Path:
    """A git repository whose .pre-commit-config.yaml uses the snapshot's ONNX hook."""
    folder.mkdir(parents=True)
    _git(folder, "init", "-q")
    head = _git(repo, "rev-parse", "HEAD").strip()
    hook = "      - id: bnlint-onnx\n" + (f"        args: {args}\n" if args else "")
    (folder / ".pre-commit-config.yaml").write_text(
        f"repos:\n  - repo: {repo}\n    rev: {head}\n    hooks:\n{hook}"
    )
    return folder


def _run_hook(home: Path, project: Path, *files: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PRE_COMMIT, "run", "--color", "never", "--files", *files],
        cwd=project,
        env=_environment(home),
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_onnx_hook_fails_a_bad_model_and_passes_a_good_one(hook_repo, tmp_path: Path) -> None:
    repo, home = hook_repo
    project = _project(tmp_path / "project", repo)
    bad = onnx_zoo.opset14_training_mode(project / "models")  # BN003: an error
    good = onnx_zoo.resnet_opset15(project / "models")  # foldable-BN notes only
    _git(project, "add", "-A")

    failed = _run_hook(home, project, str(bad.relative_to(project)))
    output = failed.stdout + failed.stderr
    assert failed.returncode == 1, output
    assert "bnlint (ONNX)" in output and "Failed" in output
    assert "models/opset14_training_mode.onnx:bn [BatchNormalization] BN003" in output

    passed = _run_hook(home, project, str(good.relative_to(project)))
    output = passed.stdout + passed.stderr
    assert passed.returncode == 0, output
    assert re.search(r"bnlint \(ONNX\)\.+Passed", output), output


@pytest.mark.slow
def test_a_file_name_is_never_an_option(hook_repo, tmp_path: Path) -> None:
    """``pre-commit run --all-files`` in a repository holding ``--config=c.onnx``."""
    repo, home = hook_repo
    project = _project(tmp_path / "project", repo, args="[--config, pinned.toml]")
    marker = tmp_path / "MARKER"
    trust_files.rules_dir(project / "plugins", marker)
    onnx_zoo.resnet_opset15(project / "models")  # notes only: passes the pinned gate
    (project / "c.onnx").write_text('rules-dir = ["plugins"]\nfail-on = "never"\n')
    (project / "--config=c.onnx").write_text('rules-dir = ["plugins"]\nfail-on = "never"\n')
    (project / "pinned.toml").write_text('fail-on = "warning"\n')
    _git(project, "add", "-A")
    attack = run_attack(
        ["run", "--all-files", "--color", "never"],
        tmp_path,
        watch=[project],
        cwd=project,
        command=PRE_COMMIT,
        env=_environment(home),
        expected_seconds=90,
    )
    output = attack.stdout + attack.stderr
    assert attack.returncode == 1, output  # the hook failed, loudly
    assert not marker.exists(), "a file name was read as --config and its rules folder ran"
    assert "bnlint: error: --config=c.onnx: not a valid ONNX model" in output, output
    assert "bnlint: error: c.onnx: not a valid ONNX model" in output, output
    assert "Traceback" not in output and not attack.changed, attack.changed
