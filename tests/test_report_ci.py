"""Formats CI systems read (GitHub commands, GitLab Code Quality, JUnit) and the progress bar."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bnlint.findings import Finding, ModelResult, Report, Severity
from bnlint.report import RenderOptions, render
from bnlint.report.github import annotation
from bnlint.report.progress import Progress
from tests.zoo import onnx_zoo

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def models(tmp_path: Path) -> list[str]:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"nope")
    return [
        str(onnx_zoo.opset14_training_mode(tmp_path / "a")),  # BN003 error
        str(onnx_zoo.resnet_opset15(tmp_path / "b")),  # healthy (BN011 x3 when selected)
        str(corrupt),
    ]


def test_github_annotations_escape_like_the_actions_toolkit() -> None:
    line = annotation("error", "dir,1/m:x.onnx", "BN003 a,b", "50% done\nnext::set-env")
    assert line == "::error file=dir%2C1/m%3Ax.onnx,title=BN003 a%2Cb::50%25 done%0Anext::set-env"
    assert "\n" not in line


def test_github_format_levels_and_unreadable(run_cli, models: list[str]) -> None:
    args = [*models, "--format", "github", "--extend-select", "BN011"]
    lines = run_cli(args, exit_code=2).stdout.splitlines()
    assert lines[0].startswith("::error file=") and "title=BN003 batchnorm-training" in lines[0]
    assert "%0AFix: put the model in eval mode" in lines[0]
    assert "%0ADocs: https://bnlint.github.io/bnlint/rules/BN003/" in lines[0]
    (notice,) = [line for line in lines if line.startswith("::notice ")]  # 3 BN011: one group
    assert "title=BN011 foldable-batchnorm (3 layers)::" in notice
    assert "%0AAlso at: " in notice
    assert any(line.startswith("::error ") and "unreadable model" in line for line in lines)
    assert lines[-2].startswith("Found 4 findings (1 error, 3 info) in 2 models")
    assert lines[-1].startswith("3 of 4 BatchNorms can be folded")


def test_gitlab_code_quality(run_cli, models: list[str]) -> None:
    args = [*models, "--format", "gitlab", "--extend-select", "BN011"]
    issues = json.loads(run_cli(args, exit_code=2).stdout)
    assert [issue["severity"] for issue in issues] == [
        "critical",
        "info",
        "info",
        "info",
        "blocker",
    ]
    assert len({issue["fingerprint"] for issue in issues}) == len(issues)
    for issue in issues:
        assert {"description", "check_name", "fingerprint", "severity", "location"} <= set(issue)
        assert issue["location"]["lines"]["begin"] == 1
    assert issues[0]["check_name"] == "BN003" and issues[0]["description"].startswith("BN003 ")
    assert issues[-1]["check_name"] == "unreadable-model"


def test_junit_failures_follow_the_gate(run_cli, models: list[str]) -> None:
    args = [*models, "--format", "junit", "--extend-select", "BN011"]
    root = ET.fromstring(run_cli(args, exit_code=2).stdout)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("5", "1", "1")
    first = root[0][0]
    assert first.get("classname") == "bnlint.BN003" and first.find("failure") is not None
    assert "Docs: https://bnlint.github.io/bnlint/rules/BN003/" in first.find("failure").text
    info = root[1][0]
    assert info.find("failure") is None and "[info]" in info.find("system-out").text
    lenient = ET.fromstring(
        run_cli([*models[:2], *args[len(models) :], "--fail-on", "never"], exit_code=0).stdout
    )
    assert lenient.get("failures") == "0" and lenient.get("tests") == "4"


def test_junit_is_well_formed_with_control_characters(tmp_path: Path) -> None:
    finding = Finding(
        "BN006", "degenerate-running-variance", Severity.ERROR, "bad\x00\x1b[31m", node="n\x07"
    )
    report = Report([ModelResult(str(tmp_path / "m.onnx"), "onnx", findings=[finding])])
    root = ET.fromstring(render(report, "junit", RenderOptions()))
    assert root[0][0].get("name") == "BN006 degenerate-running-variance at n\\x07"


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_appears_only_on_a_terminal_for_a_long_run() -> None:
    now = [0.0]
    tty = FakeTerminal()
    progress = Progress(3, tty, delay=1.0, clock=lambda: now[0])
    progress.advance("a.onnx")
    assert tty.getvalue() == "", "nothing during the first second"
    now[0] = 2.0
    progress.advance("b.onnx")
    assert "2/3 b.onnx" in tty.getvalue()
    progress.close()
    assert tty.getvalue().endswith("\r\x1b[2K"), "the bar is erased at the end"

    pipe = io.StringIO()
    quiet = Progress(3, pipe, delay=0.0, clock=lambda: 5.0)
    quiet.advance("a.onnx")
    quiet.close()
    assert pipe.getvalue() == ""
    single = FakeTerminal()
    Progress(1, single, delay=0.0).advance("a.onnx")
    assert single.getvalue() == ""


def test_cli_keeps_stderr_clean_when_not_a_terminal(run_cli, models: list[str]) -> None:
    result = run_cli([*models[:2], "--format", "json", "-j", "2"], exit_code=1)
    assert result.stderr == ""


def test_write_errors_are_one_line(run_cli, models: list[str], tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "report.html"  # its folder cannot be created: a file is in the way
    result = run_cli([models[0], "--report-html", target], exit_code=2)
    assert result.stderr.startswith(f"bnlint: error: {target}: cannot create its folder")
    assert result.stderr.count("\n") == 1


def _ci_command(example: str) -> tuple[list[str], dict]:
    import shlex

    import yaml

    data = yaml.safe_load((REPO / "examples" / "ci" / example).read_text())
    if example == "github-actions.yml":
        steps = data["jobs"]["bnlint"]["steps"]
        lines = [step["run"] for step in steps if step.get("run", "").startswith("bnlint ")]
    else:
        lines = [line for line in data["bnlint"]["script"] if line.startswith("bnlint ")]
    (line,) = [line for line in lines if "--baseline" in line]  # the gate (GitHub: + SARIF)
    for variable in ("$GITHUB_STEP_SUMMARY", "$RUNNER_TEMP", "$BNLINT_BASE"):
        line = line.replace(
            variable, {"$GITHUB_STEP_SUMMARY": "step-summary.md"}.get(variable, "base")
        )
    return shlex.split(line)[1:], data


def _pins_the_base_branch(example: str, data: dict) -> bool:
    """The configuration and baseline the gate uses come from the base branch's commit."""
    if example == "github-actions.yml":
        steps = data["jobs"]["bnlint"]["steps"]
        script = next(s["run"] for s in steps if "git show" in s.get("run", ""))
        base = next(s for s in steps if "git show" in s.get("run", ""))["env"]["BASE"]
        pinned = "github.event.pull_request.base.sha" in base
    else:
        script = "\n".join(data["bnlint"]["script"])
        pinned = "CI_MERGE_REQUEST_DIFF_BASE_SHA" in script
    return pinned and all(
        f'git show "$BASE:{name}"' in script for name in ("bnlint.toml", "bnlint-baseline.json")
    )


@pytest.mark.parametrize("example", ["github-actions.yml", "gitlab-ci.yml"])
def test_ci_examples_gate_on_new_findings_and_keep_the_reports(
    run_cli, example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args, data = _ci_command(example)
    assert _pins_the_base_branch(example, data)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()  # what the pinning step fetched from the base branch
    (tmp_path / "base" / "bnlint.toml").write_text('fail-on = "warning"\n')
    onnx_zoo.opset14_training_mode(tmp_path / "models")  # an accepted, old error
    run_cli(["models/", "--write-baseline", "base/bnlint-baseline.json", "-q"], exit_code=0)
    run_cli(args, exit_code=0)  # the documented command, verbatim
    # A pull request's own configuration next to its models cannot turn the gate off.
    (tmp_path / "models" / ".bnlint.toml").write_text('fail-on = "never"\nignore = ["ALL"]\n')
    html = Path(args[args.index("--report-html") + 1])
    summary = Path(args[args.index("--report-md") + 1])
    assert "<!DOCTYPE html>" in html.read_text() and "bnlint passed" in summary.read_text()
    onnx_zoo.opset9_training(tmp_path / "models")  # a new error fails the gate
    run_cli(args, exit_code=1)
    assert "bnlint failed: new findings at or above warning" in summary.read_text()
    if example == "github-actions.yml":
        upload = next(
            s for s in data["jobs"]["bnlint"]["steps"] if "upload-artifact" in s.get("uses", "")
        )
        assert upload["if"] == "always()" and upload["with"]["path"] == str(html)
        assert summary.name == "step-summary.md", "the summary goes to $GITHUB_STEP_SUMMARY"
    else:
        artifacts = data["bnlint"]["artifacts"]
        assert artifacts["when"] == "always" and str(html) in artifacts["paths"]
        report = args[args.index("--output") + 1]
        assert artifacts["reports"]["codequality"] == report
        assert json.loads(Path(report).read_text())[0]["check_name"] == "BN003"
