"""This checkout as a pre-commit hook repository, built once per test run.

The working tree (tracked and new, non-ignored files) is snapshotted into a one-commit git
repository tagged ``v<version>``, the tag a release of this tree would carry (README's
pre-commit snippet pins it). Projects point their ``.pre-commit-config.yaml`` at it
(``repo:`` the snapshot, ``rev:`` the tag); ``pre-commit run`` then builds the hook's
virtual environment from it (``pip install .`` of this checkout). The snapshot and
``PRE_COMMIT_HOME`` are shared by every test and xdist worker of the run (made once under a
lock; pre-commit locks its own store), so the environment is built once.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bnlint._version import __version__

REPO = Path(__file__).resolve().parents[1]
GIT_IDENTITY = ["-c", "user.name=bnlint-tests", "-c", "user.email=tests@bnlint.invalid"]
PRE_COMMIT = [sys.executable, "-m", "pre_commit"]
RELEASE_TAG = f"v{__version__}"


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def snapshot(target: Path) -> Path:
    """The working tree as a one-commit repository tagged like a release of it."""
    listed = git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    git(target, "init", "-q")
    git(target, "add", "-A")
    git(target, "commit", "-q", "-m", "snapshot")
    git(target, "tag", "-a", RELEASE_TAG, "-m", f"bnlint {__version__}")
    return target


@pytest.fixture(scope="session")
def hook_repo(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> tuple[Path, Path]:
    """(snapshot repository, PRE_COMMIT_HOME), shared by every xdist worker of this run."""
    base = tmp_path_factory.getbasetemp()
    shared = (base if worker_id == "master" else base.parent) / "bnlint-pre-commit"
    shared.mkdir(exist_ok=True)
    with open(shared / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        repo = shared / "hook-repo"
        if not (repo / ".git").exists():
            snapshot(repo)
    return repo, shared / "home"


def environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "PRE_COMMIT"))}
    env["PRE_COMMIT_HOME"] = str(home)
    return env


def project(folder: Path, config: str) -> Path:
    """A git repository holding ``config`` as its ``.pre-commit-config.yaml``."""
    folder.mkdir(parents=True)
    git(folder, "init", "-q")
    (folder / ".pre-commit-config.yaml").write_text(config)
    return folder


def hook_config(repo: Path, args: str = "") -> str:
    """A configuration using the snapshot's ONNX hook at the release tag."""
    hook = "      - id: bnlint-onnx\n" + (f"        args: {args}\n" if args else "")
    return f"repos:\n  - repo: {repo}\n    rev: {RELEASE_TAG}\n    hooks:\n{hook}"


def run_hook(home: Path, folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*PRE_COMMIT, "run", "--color", "never", *args],
        cwd=folder,
        env={**environment(home), **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
