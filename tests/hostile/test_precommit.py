"""The pre-commit hooks, for real: this checkout installed as a hook repository.

The tests snapshot the working tree (tracked and new, non-ignored files) into a temporary
git repository tagged like its release (``tests/precommit_repo.py``, shared with the
README recipe test) and point a project's ``.pre-commit-config.yaml`` at it (``repo:`` the
snapshot, ``rev:`` the tag); ``pre-commit run`` then builds the hook's virtual
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

import re
from pathlib import Path

import pytest
from pre_commit.clientlib import load_manifest

from tests.hostile import trust_files
from tests.hostile.runner import run_attack
from tests.precommit_repo import (
    PRE_COMMIT,
    REPO,
    environment,
    git,
    hook_config,
    project,
    run_hook,
)
from tests.zoo import onnx_zoo


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


@pytest.mark.slow
def test_onnx_hook_fails_a_bad_model_and_passes_a_good_one(hook_repo, tmp_path: Path) -> None:
    repo, home = hook_repo
    folder = project(tmp_path / "project", hook_config(repo))
    bad = onnx_zoo.opset14_training_mode(folder / "models")  # BN003: an error
    good = onnx_zoo.resnet_opset15(folder / "models")  # healthy
    git(folder, "add", "-A")

    failed = run_hook(home, folder, "--files", str(bad.relative_to(folder)))
    output = failed.stdout + failed.stderr
    assert failed.returncode == 1, output
    assert "bnlint (ONNX)" in output and "Failed" in output
    assert "models/opset14_training_mode.onnx:bn [BatchNormalization] BN003" in output

    passed = run_hook(home, folder, "--files", str(good.relative_to(folder)))
    output = passed.stdout + passed.stderr
    assert passed.returncode == 0, output
    assert re.search(r"bnlint \(ONNX\)\.+Passed", output), output


@pytest.mark.slow
def test_a_file_name_is_never_an_option(hook_repo, tmp_path: Path) -> None:
    """``pre-commit run --all-files`` in a repository holding ``--config=c.onnx``."""
    repo, home = hook_repo
    project_dir = project(tmp_path / "project", hook_config(repo, args="[--config, pinned.toml]"))
    marker = tmp_path / "MARKER"
    trust_files.rules_dir(project_dir / "plugins", marker)
    onnx_zoo.resnet_opset15(project_dir / "models")  # healthy: passes the pinned gate
    (project_dir / "c.onnx").write_text('rules-dir = ["plugins"]\nfail-on = "never"\n')
    (project_dir / "--config=c.onnx").write_text('rules-dir = ["plugins"]\nfail-on = "never"\n')
    (project_dir / "pinned.toml").write_text('fail-on = "warning"\n')
    git(project_dir, "add", "-A")
    attack = run_attack(
        ["run", "--all-files", "--color", "never"],
        tmp_path,
        watch=[project_dir],
        cwd=project_dir,
        command=PRE_COMMIT,
        env=environment(home),
        expected_seconds=90,
    )
    output = attack.stdout + attack.stderr
    assert attack.returncode == 1, output  # the hook failed, loudly
    assert not marker.exists(), "a file name was read as --config and its rules folder ran"
    assert "bnlint: error: --config=c.onnx: not a valid ONNX model" in output, output
    assert "bnlint: error: c.onnx: not a valid ONNX model" in output, output
    assert "Traceback" not in output and not attack.changed, attack.changed
