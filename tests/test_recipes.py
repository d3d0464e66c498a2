"""The recipes a user copies, run as printed (issue 15).

- the README's pre-commit snippet, verbatim but for its repository URL (pointed at a
  snapshot of this checkout tagged like its release), in a real ``pre-commit run``;
- the README's install line, verbatim but for its repository URL, into a fresh virtual
  environment (bnlint is not on any package index: it installs from the release tag);
- every pin of a release (README, the CI examples, the docs) is ``v<version>``, the tag a
  release of this tree carries, with a changelog section of its own;
- the GitHub workflow: LFS checkout, the gate with annotations, the Markdown summary and the
  HTML artifact, SARIF for code scanning with ``security-events: write``, every bnlint
  command run as printed; the GitLab job: Code Quality and artifacts, git in its image;
- ``make demo`` installs bnlint without extras, and the demo imports nothing else.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
import venv
from pathlib import Path

import pytest
import yaml

from bnlint._version import __version__
from tests.helpers import lend_test_dependencies
from tests.precommit_repo import RELEASE_TAG, git, project, run_hook
from tests.zoo import onnx_zoo

REPO = Path(__file__).resolve().parents[1]
URL = "https://github.com/bnlint/bnlint"
INSTALL = re.compile(r'python -m pip install "bnlint(\[[a-z,]+\])? @ git\+(\S+)@(v[\w.]+)"')


def readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def fenced_block(text: str, first_line: str) -> str:
    """The fenced code block whose first line starts with ``first_line``."""
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        if block.partition("\n")[0].startswith(first_line):
            return block
    raise AssertionError(f"no code block starting with {first_line!r}")


def pinned_files() -> list[Path]:
    docs = sorted((REPO / "docs").glob("*.md"))
    return [REPO / "README.md", *docs, *sorted((REPO / "examples" / "ci").glob("*.yml"))]


def test_every_pin_is_the_release_tag() -> None:
    snippet = fenced_block(readme(), "# .pre-commit-config.yaml")
    assert yaml.safe_load(snippet)["repos"][0]["rev"] == RELEASE_TAG == f"v{__version__}"
    installs = [
        (path.name, match.group(2), match.group(3))
        for path in pinned_files()
        for match in INSTALL.finditer(path.read_text(encoding="utf-8"))
    ]
    assert {name for name, _, _ in installs} >= {
        "README.md",
        "install.md",
        "github-actions.yml",
        "gitlab-ci.yml",
    }
    assert {(url, tag) for _, url, tag in installs} == {(URL, RELEASE_TAG)}
    revs = [
        (path.name, rev)
        for path in pinned_files()
        for rev in re.findall(r"^\s*rev: (\S+)", path.read_text(encoding="utf-8"), re.M)
    ]
    assert revs and {rev for _, rev in revs} == {RELEASE_TAG}, revs
    for path in pinned_files():
        assert "pip install bnlint" not in path.read_text(encoding="utf-8"), path.name
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert re.search(rf"^## {re.escape(__version__)}\b", changelog, re.M)
    tags = subprocess.run(
        ["git", "tag", "--list"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.split()
    if tags:  # a clone with its tags: the release the README pins exists
        assert RELEASE_TAG in tags, f"tag {RELEASE_TAG} is missing: git tag -a {RELEASE_TAG}"


@pytest.mark.slow
def test_readme_pre_commit_snippet_as_printed(hook_repo, tmp_path: Path) -> None:
    repo, home = hook_repo
    snippet = fenced_block(readme(), "# .pre-commit-config.yaml")
    assert snippet.count(URL) == 1
    folder = project(tmp_path / "project", snippet.replace(URL, str(repo)))
    bad = onnx_zoo.opset14_training_mode(folder / "models")  # BN003: an error
    good = onnx_zoo.resnet_opset15(folder / "models")  # healthy
    git(folder, "add", "-A")
    skip = {"SKIP": "bnlint-torch"}  # its environment would download torch; it is skipped
    failed = run_hook(home, folder, "--files", str(bad.relative_to(folder)), **skip)
    output = failed.stdout + failed.stderr
    assert failed.returncode == 1, output
    assert re.search(r"bnlint \(ONNX\)\.+Failed", output), output
    assert "models/opset14_training_mode.onnx:bn [BatchNormalization] BN003" in output
    assert re.search(r"bnlint \(PyTorch\)\.+Skipped", output), output
    passed = run_hook(home, folder, "--files", str(good.relative_to(folder)), **skip)
    output = passed.stdout + passed.stderr
    assert passed.returncode == 0, output
    assert re.search(r"bnlint \(ONNX\)\.+Passed", output), output


@pytest.mark.slow
def test_readme_install_line_as_printed(hook_repo, tmp_path: Path) -> None:
    """The first install line of the README, with the repository URL pointed at the tagged
    snapshot, into a fresh virtual environment: bnlint comes from the tag, not an index.
    (Its dependencies come from the test environment, so nothing is downloaded but the
    build backend.)"""
    repo, _ = hook_repo
    block = fenced_block(readme(), "# bnlint is not on a package index: install a release tag")
    line = next(line for line in block.splitlines() if INSTALL.match(line))
    # file://localhost/…: the pip that ensurepip bundles (23.x) wants a host in a git+ URL
    local = f"file://localhost{repo}"
    command = shlex.split(line.split("#", 1)[0].replace(URL, local))
    assert command[:4] == ["python", "-m", "pip", "install"]
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    site = lend_test_dependencies(python)  # bnlint from the tag/wheel, the rest from here
    installed = subprocess.run(
        [str(python), *command[1:], "-q"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    version = subprocess.run(
        [str(target / "bin" / "bnlint"), "--version"], capture_output=True, text=True, timeout=300
    )
    assert version.stdout.strip() == f"bnlint {__version__}", version
    origin = json.loads(
        next(site.glob("bnlint-*.dist-info")).joinpath("direct_url.json").read_text()
    )
    assert origin["url"] == local and origin["vcs_info"]["requested_revision"] == RELEASE_TAG


def _workflow() -> dict:
    return yaml.safe_load((REPO / "examples" / "ci" / "github-actions.yml").read_text())


def _bnlint_runs(steps: list[dict]) -> list[dict]:
    return [step for step in steps if step.get("run", "").startswith("bnlint ")]


def _args(line: str, variables: dict[str, str]) -> list[str]:
    for name, value in variables.items():
        line = line.replace(f"${name}", value)
    return shlex.split(line)[1:]


def test_github_workflow_has_lfs_code_scanning_artifact_and_summary(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_report_sarif import validate_sarif

    job = _workflow()["jobs"]["bnlint"]
    assert job["permissions"] == {"contents": "read", "security-events": "write"}
    steps = job["steps"]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["lfs"] is True, "model files in Git LFS need the LFS checkout"
    install = next(s for s in steps if "pip install" in s.get("run", ""))
    assert INSTALL.fullmatch(install["run"].split("#")[0].strip())
    gate, sarif_step = _bnlint_runs(steps)
    upload = next(
        s for s in steps if s.get("uses", "").startswith("github/codeql-action/upload-sarif@")
    )
    artifact = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@"))
    assert sarif_step["if"] == upload["if"].split(" && ")[0] == artifact["if"] == "always()"

    monkeypatch.chdir(tmp_path)
    variables = {"GITHUB_STEP_SUMMARY": "step-summary.md", "RUNNER_TEMP": "base"}
    (tmp_path / "base").mkdir()  # what the pinning step fetched from the base branch
    (tmp_path / "base" / "bnlint.toml").write_text('fail-on = "warning"\n')
    onnx_zoo.opset14_training_mode(tmp_path / "models")  # accepted in the baseline
    run_cli(["models/", "--write-baseline", "base/bnlint-baseline.json", "-q"], exit_code=0)
    onnx_zoo.opset9_training(tmp_path / "models")  # new: fails the gate
    gate_args = _args(gate["run"], variables)
    result = run_cli(gate_args, exit_code=1)
    assert result.stdout.startswith("::error file=models/opset9_training.onnx")
    assert "bnlint failed: new findings" in Path("step-summary.md").read_text()
    assert artifact["with"]["path"] == gate_args[gate_args.index("--report-html") + 1]
    assert Path(artifact["with"]["path"]).is_file()
    sarif_args = _args(sarif_step["run"], variables)
    run_cli(sarif_args, exit_code=0)  # --exit-zero: the gate is the step before
    sarif = Path(sarif_args[sarif_args.index("--output") + 1])
    assert upload["with"]["sarif_file"] == str(sarif)
    data = json.loads(sarif.read_text())
    validate_sarif(data)  # the SARIF schema and GitHub's ingestion requirements
    located = {
        (r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"])
        for r in data["runs"][0]["results"]
    }  # every finding, the baseline's too: code scanning keeps its own alert history
    assert {
        ("BN003", "models/opset14_training_mode.onnx"),
        ("BN003", "models/opset9_training.onnx"),
    } <= located

    pointer = tmp_path / "models" / "lfs.onnx"  # a checkout without LFS
    pointer.write_text(
        "version https://git-lfs.github.com/spec/v1\noid sha256:" + "0" * 64 + "\nsize 1234\n"
    )
    refused = run_cli(gate_args, exit_code=2)
    assert "lfs.onnx: Git LFS pointer, not the model" in refused.stderr


def test_gitlab_job_has_code_quality_artifacts_and_git() -> None:
    job = yaml.safe_load((REPO / "examples" / "ci" / "gitlab-ci.yml").read_text())["bnlint"]
    assert "slim" not in job["image"], "the job runs git (base-branch pinning, pip from git)"
    script = job["script"]
    assert any(INSTALL.fullmatch(line.split("#")[0].strip()) for line in script)
    (gate,) = [line for line in script if line.startswith("bnlint ")]
    args = shlex.split(gate)
    report = args[args.index("--output") + 1]
    assert args[args.index("--format") + 1] == "gitlab"
    assert job["artifacts"]["reports"]["codequality"] == report
    assert job["artifacts"]["when"] == "always"
    kept = {args[args.index("--report-html") + 1], args[args.index("--report-md") + 1]}
    assert kept <= set(job["artifacts"]["paths"])


def test_make_demo_installs_bnlint_without_extras(tmp_path: Path) -> None:
    """`make demo` installs `.` (the core dependencies) into its own environment, and the
    demo's commands import nothing the core does not provide."""
    dry = subprocess.run(
        ["make", "-n", "-B", "demo", "PYTHON=python3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr
    installs = [line for line in dry.stdout.splitlines() if " pip install" in line]
    assert installs and all("[" not in line and "'.'" not in line for line in installs), installs
    assert any(line.rstrip().endswith(" .") for line in installs), installs
    assert ".venv/.installed" not in dry.stdout, "the demo does not need the dev environment"
    probe = textwrap.dedent(
        """
        import runpy, sys
        folder = sys.argv[1]
        sys.argv = ["build_examples.py", folder]
        runpy.run_path("examples/build_examples.py", run_name="__main__")
        from bnlint.cli import main
        sys.argv = ["bnlint", folder, "--exit-zero", "-q"]
        try:
            main()
        except SystemExit:
            pass
        extra = {"torch", "onnxruntime", "onnxscript", "onnxsim", "onnxslim", "onnxoptimizer",
                 "safetensors", "jsonschema", "hypothesis", "yaml", "pytest", "mkdocs"}
        print(sorted(extra & {name.split(".")[0] for name in sys.modules}))
        """
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "models")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert ran.stdout.strip().splitlines()[-1] == "[]", ran.stdout


def test_the_docs_workflow_excerpt_is_the_example() -> None:
    """docs/ci.md shows the GitHub workflow's job without its boilerplate: every key and
    step it shows is the example's, as printed (LFS, permissions, SARIF included)."""
    docs = (REPO / "docs" / "ci.md").read_text(encoding="utf-8")
    excerpt = yaml.safe_load(fenced_block(docs, "    permissions:"))
    job = _workflow()["jobs"]["bnlint"]
    assert excerpt["permissions"] == job["permissions"]
    assert excerpt["steps"] and all(step in job["steps"] for step in excerpt["steps"])
    example_steps = [s for s in job["steps"] if "setup-python" not in s.get("uses", "")]
    assert excerpt["steps"] == example_steps, "the excerpt leaves out only the Python setup"
