"""Every hostile case through the real executable, ``python -m bnlint``.

Two kinds of runs over the cases of :func:`tests.hostile.generate.all_cases`:

- one process per case for every case that needs no PyTorch (per-file exit code);
- one process with *all* cases on its command line, PyTorch payloads included, writing
  JSON, HTML and Markdown reports: each refused file gets its own error line, every
  other file is still linted.

Each run must end with the expected exit code; one stderr line
``bnlint: error: <path>: <problem>`` per refused file and nothing else; never a
traceback; no marker (no code from a file ran); inputs unchanged (sha256, size and mtime
of every entry in the case folders); no file created except the report paths given on
the command line (the case folders, the run's own ``TMPDIR`` and ``HOME``, and the working
directory are snapshotted). Time and memory are guards only: a timeout of ten times a
generous expected duration and an address-space limit set with ``setrlimit(RLIMIT_AS)``
in ``preexec_fn``. Processes are launched from the main thread (``preexec_fn`` is unsafe
with threads) and the cases are generated in a separate process, so this one never
imports torch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bnlint.report.sanitize import printable
from tests.hostile.cases_json import CASE_NAMES
from tests.hostile.runner import ONNX_ADDRESS_SPACE, TORCH_ADDRESS_SPACE
from tests.hostile.runner import address_limit as _limit
from tests.hostile.runner import fingerprint as _fingerprint

REPO = Path(__file__).resolve().parents[2]
PARALLEL = max(2, min(4, os.cpu_count() or 2))
COMBINED_EXPECTED_SECONDS = 20.0


@dataclass
class Run:
    """One ``python -m bnlint`` process over some cases."""

    names: list[str]
    args: list[str]
    address_space: int
    expected_seconds: float
    folder: Path  # holds out/, tmp/, home/ and the captured streams
    returncode: int | None = None  # None: killed at the timeout
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    before: dict[str, tuple] = field(default_factory=dict)
    after: dict[str, tuple] = field(default_factory=dict)


def _start(run: Run, cases: dict[str, dict]) -> tuple:
    for name in ("out", "tmp", "home"):
        (run.folder / name).mkdir(parents=True)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.update(TMPDIR=str(run.folder / "tmp"), HOME=str(run.folder / "home"))
    env.pop("PYTHONPATH", None)
    streams = [open(run.folder / name, "w+b") for name in ("stdout", "stderr")]  # noqa: SIM115
    run.before = _fingerprint([Path(cases[name]["folder"]) for name in run.names])
    process = subprocess.Popen(
        [sys.executable, "-m", "bnlint", *run.args],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=streams[0],
        stderr=streams[1],
        preexec_fn=_limit(run.address_space),
    )
    return process, time.monotonic(), streams


def _run_all(runs: list[Run], cases: dict[str, dict]) -> None:
    """Run every process, at most ``PARALLEL`` at a time, each under its own timeout."""
    pending, running = list(runs), []
    while pending or running:
        while pending and len(running) < PARALLEL:
            run = pending.pop(0)
            running.append((run, *_start(run, cases)))
        time.sleep(0.02)
        for item in list(running):
            run, process, started, streams = item
            run.seconds = time.monotonic() - started
            if process.poll() is None and run.seconds < 10 * run.expected_seconds:
                continue
            if process.poll() is None:
                process.kill()
            process.wait()
            run.returncode = (
                None if run.seconds >= 10 * run.expected_seconds else process.returncode
            )
            for stream, attribute in zip(streams, ("stdout", "stderr"), strict=True):
                stream.seek(0)
                setattr(run, attribute, stream.read().decode("utf-8", "backslashreplace"))
                stream.close()
            run.after = _fingerprint([Path(cases[name]["folder"]) for name in run.names])
            running.remove(item)


def _report_args(run_folder: Path, formats: tuple[str, ...]) -> list[str]:
    out = run_folder / "out"
    args = ["--format", "json", "-o", str(out / "report.json")]
    if "html" in formats:
        args += ["--report-html", str(out / "report.html")]
    if "md" in formats:
        args += ["--report-md", str(out / "report.md")]
    return args


def _problems(run: Run, cases: dict[str, dict], expected_exit: int) -> list[str]:
    """Everything wrong with one run (empty when every case in it behaved)."""
    if run.returncode is None:
        return [f"killed after {run.seconds:.0f}s (10 x the expected time)"]
    problems = []
    markers = [cases[n]["marker"] for n in run.names if cases[n]["marker"]]
    problems += [f"code from a file ran: {m}" for m in markers if Path(m).exists()]
    if "Traceback" in run.stderr:
        problems.append("traceback")
    if run.returncode != expected_exit:
        problems.append(f"exit {run.returncode}, expected {expected_exit}")
    lines = run.stderr.splitlines()
    wrote = [line for line in lines if line.startswith("bnlint: wrote ")]  # each report named
    lines = [line for line in lines if line not in wrote]
    refused = [cases[n] for n in run.names if cases[n]["outcome"] == "refused"]
    for case in refused:
        prefix = f"bnlint: error: {printable(case['path'], None)}: "
        mine = [line for line in lines if line.startswith(prefix)]
        if len(mine) != 1 or case["problem"] not in mine[0]:
            problems.append(f"expected one line {prefix}…{case['problem']}…, got {mine}")
    if len(lines) != len(refused):
        problems.append(f"{len(lines)} stderr lines for {len(refused)} refused files")
    if run.before != run.after:
        changed = sorted(set(run.before) ^ set(run.after)) or [
            path for path in run.before if run.before[path] != run.after.get(path)
        ]
        problems.append(f"the inputs changed: {changed[:4]}")
    expected_reports = sorted(path for path in run.args if path.startswith(str(run.folder)))
    written = sorted(str(path) for path in (run.folder / "out").iterdir())
    if written != expected_reports:
        problems.append(f"output folder holds {written}, expected {expected_reports}")
    named = sorted(line.rsplit(" ", 1)[-1] for line in wrote)
    if named != [printable(path, None) for path in expected_reports]:
        problems.append(f"stderr names the reports {named}, expected {expected_reports}")
    for name in ("tmp", "home"):
        if left := os.listdir(run.folder / name):
            problems.append(f"left {left} in {name}")
    if problems:
        return problems
    models = json.loads((run.folder / "out" / "report.json").read_text())["models"]
    by_path = {model["path"]: model for model in models}
    for name in run.names:
        case = cases[name]
        found = [m for path, m in by_path.items() if path.startswith(case["path"])]
        statuses = {model["status"] for model in found}
        codes = {f["code"] for model in found for f in model["findings"]}
        if statuses != ({"error"} if case["outcome"] == "refused" else {"ok"}):
            problems.append(f"{name}: statuses {statuses}")
        if not set(case["codes"]) <= codes:
            problems.append(f"{name}: reported {sorted(codes)}, expected {case['codes']}")
        if "BN902" in codes:
            problems.append(f"{name}: a rule crashed (BN902)")
    return problems


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, dict]:
    folder = tmp_path_factory.mktemp("hostile_cases")
    made = subprocess.run(
        [sys.executable, "-m", "tests.hostile.cases_json", str(folder / "cases")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    built = json.loads(made.stdout)
    assert set(built) == set(CASE_NAMES)
    return built


def _checked(runs: list[Run], cases: dict[str, dict], exits: list[int]) -> None:
    cwd_before = set(os.listdir(REPO))  # other writers may edit deeper folders meanwhile
    _run_all(runs, cases)
    created = set(os.listdir(REPO)) - cwd_before
    assert not created, f"files created in the working directory: {sorted(created)}"
    failures = {}
    for run, expected_exit in zip(runs, exits, strict=True):
        if problems := _problems(run, cases, expected_exit):
            failures[" + ".join(run.names)] = (problems, run.stderr.strip()[-800:])
    details = "\n".join(f"{k}: {'; '.join(p)}\n    stderr: {e!r}" for k, (p, e) in failures.items())
    assert not failures, f"{len(failures)} of {len(runs)} runs failed:\n{details}"


def test_each_file_on_its_own(cases: dict[str, dict], tmp_path: Path) -> None:
    """One process per case that needs no PyTorch: its own exit code, line and guards."""
    runs, exits = [], []
    for name, case in sorted(cases.items()):
        if case["torch"]:
            continue  # covered by the combined run (importing torch costs seconds per run)
        folder = tmp_path / name
        args = [case["path"], *_report_args(folder, ()), *case["args"]]
        runs.append(Run([name], args, ONNX_ADDRESS_SPACE, case["expected_seconds"], folder))
        exits.append(case["exit_code"])
    assert len(runs) >= 25
    _checked(runs, cases, exits)


def test_all_files_in_one_run(cases: dict[str, dict], tmp_path: Path) -> None:
    """Every case on one command line: each refused file is one line, the others are linted."""
    names = sorted(cases)
    args = [cases[name]["path"] for name in names] + _report_args(tmp_path, ("html", "md"))
    run = Run(names, args, TORCH_ADDRESS_SPACE, COMBINED_EXPECTED_SECONDS, tmp_path)
    _checked([run], cases, [2])


def test_hostile_names_are_inert_in_reports(tmp_path: Path) -> None:
    """HTML escaped, Markdown escaped, Jinja never evaluated, terminals neutralised."""
    from bnlint.api import lint
    from bnlint.report import RenderOptions, extras_for, render
    from tests.hostile.graphs import hostile_names

    case = hostile_names(tmp_path)
    report = lint(str(case.path), extras=extras_for(["html", "markdown"]))
    assert {f.code for f in report.findings} >= {"BN003"}
    formats = ("text", "github", "html", "markdown", "junit", "json", "sarif")
    outputs = {fmt: render(report, fmt, RenderOptions()) for fmt in formats}
    for fmt, text in outputs.items():
        assert "\x1b" not in text and "\r" not in text, fmt
        if fmt != "junit":  # XML carries U+202E as text; CI viewers render it as a character
            assert "\u202e" not in text, fmt
        assert "{{ 7*7 }}" in text or "{{ 7\\*7 }}" in text, f"{fmt}: a template was evaluated"
    assert "<script>alert" not in outputs["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in outputs["html"]
    assert "<script>alert" not in outputs["markdown"]
    assert "\\|pipe\\|" in outputs["markdown"]
    finding_lines = [line for line in outputs["text"].splitlines() if " BN0" in line]
    assert len(finding_lines) == len(report.findings)  # no name broke a line in two
