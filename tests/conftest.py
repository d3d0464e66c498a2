"""Shared fixtures. With CI=true a skipped test is a failure (nothing may silently not run)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.helpers import CliResult, validate_report
from tests.precommit_repo import hook_repo  # noqa: F401  (a session fixture, shared)

REPO = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-snapshots", action="store_true", help="rewrite snapshot files from current output"
    )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {reason}"


@pytest.fixture
def update_snapshots(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-snapshots"))


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch):
    """Invoke the CLI in-process; assert the exit code; validate any JSON report printed."""
    from bnlint.cli import main

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)

    def invoke(args: list[str], exit_code: int | None = 0, **kwargs) -> CliResult:
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kwargs)
        message = f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        if exit_code is not None:
            assert result.exit_code == exit_code, message
        assert "Traceback" not in result.stderr, message
        data = None
        if "json" in args and result.stdout.strip().startswith("{"):
            data = json.loads(result.stdout)
            validate_report(data)
        return CliResult(result.exit_code, result.stdout, result.stderr, data)

    return invoke
