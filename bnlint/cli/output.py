"""How every command of the command line ends: one-line errors (exit 2), the report written to
each requested output (checked before anything is written), and the exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from bnlint.cli.options import color_enabled

EXIT_USAGE = 2
INVOCATION = "bnlint.argv"  # click Context.meta keys (shared by nested contexts)
STARTED = "bnlint.started"


def fail(message: str) -> None:
    """One line on stderr, exit 2 — the contract for every usage or input error.

    The message is shown :func:`~bnlint.report.sanitize.printable` (idempotent): a path or a
    name holding a newline or an escape sequence cannot forge a second line.
    """
    from bnlint.report.sanitize import printable

    click.echo(f"bnlint: error: {printable(message, 2000)}", err=True)
    sys.exit(EXIT_USAGE)


def emit_report(report: Any, options: dict[str, Any], resolver: Any) -> None:
    from dataclasses import replace

    from bnlint.api import finish_report
    from bnlint.evidence.provenance import Invocation
    from bnlint.report import RenderOptions, render
    from bnlint.report.baseline import BaselineError, render_baseline
    from bnlint.report.sanitize import printable
    from bnlint.report.write import write_output

    settings, ruleset = resolver.resolve(options["config"] or os.getcwd())
    paths = [model.path for model in report.models]
    read = [*paths, *config_files(resolver, paths)]
    read += [name for model in report.models for name in model.data_files]
    read += [settings.sample_data] if settings.sample_data else []
    create_output_folders(options)
    targets = check_outputs(options, read)
    argv = invocation_argv()
    invocation = Invocation("cli", argv)
    invocation.started = click.get_current_context().meta.get(STARTED, invocation.started)
    try:
        finish_report(report, resolver, invocation, options.get("baseline") or None)
    except BaselineError as error:
        fail(str(error))
    fmt = options["output_format"] or settings.format
    fail_on = options["fail_on"] or settings.fail_on
    for model in report.unreadable:
        user_traceback(model)
        click.echo(
            f"bnlint: error: {printable(model.path, None)}: {printable(model.error, 500)}", err=True
        )
    output = options["output"]
    render_options = RenderOptions(
        color=color_enabled(options["color"], sys.stdout) and output is None and fmt == "text",
        quiet=options["quiet"],
        statistics=options["statistics"],
        show_known=options.get("show_known", False),
        fail_on=fail_on,
        docs_url=settings.docs_url,
        command=argv,
        rules=ruleset.rules,
    )
    text = render(report, fmt, render_options)
    files = [(output, FORMAT_NAMES.get(fmt, fmt) + " report", lambda: text)] if output else []
    file_options = replace(render_options, color=False)
    for key, file_format in (("report_html", "html"), ("report_md", "markdown")):
        if options.get(key):
            files.append(
                (
                    options[key],
                    FORMAT_NAMES[file_format] + " report",
                    lambda f=file_format: render(report, f, file_options),
                )
            )
    if options.get("write_baseline"):
        files.append((options["write_baseline"], "baseline", lambda: render_baseline(report)))
    for path, name, produce in files:
        try:
            write_output(targets[path], produce())
        except OSError as error:
            fail(f"{printable(path, None)}: cannot write: {error.strerror or error}")
        if not options["quiet"] and targets[path].replaceable:  # a file, not a pipe or fd
            click.echo(f"bnlint: wrote {name} {printable(path, None)}", err=True)
    code = report.exit_code(fail_on)
    if code == 1 and (options["exit_zero"] or options.get("write_baseline")):
        code = 0
    if not output and text:
        try:
            click.echo(text, nl=False, color=render_options.color)
        except BrokenPipeError:  # `bnlint … | head`: the reader stopped; the verdict stands
            silence_stdout()
    sys.exit(code)


def silence_stdout() -> None:
    """After a closed pipe: later writes and the interpreter's final flush go nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def user_traceback(model: Any) -> None:
    """The user's own code raised (a module:factory): show its traceback, as pytest does."""
    from bnlint.report.sanitize import printable

    text = model.user_traceback
    if text:
        where = printable(model.path, None)
        lines = [f"bnlint: {where}: your code raised an exception:"]
        for line in text.rstrip("\n").split("\n"):
            if line == "Traceback (most recent call last):":
                line = "your code's traceback (most recent call last):"
            lines.append(printable(line, 2000))
        click.echo("\n".join(lines), err=True)


OUTPUT_OPTIONS = ("output", "report_html", "report_md", "write_baseline")


FORMAT_NAMES = {
    "text": "text",
    "json": "JSON",
    "sarif": "SARIF",
    "github": "GitHub",
    "gitlab": "GitLab Code Quality",
    "junit": "JUnit XML",
    "markdown": "Markdown",
    "html": "HTML",
}


def create_output_folders(options: dict[str, Any]) -> None:
    """``-o reports/bnlint.sarif`` creates ``reports/`` (as pytest-html does)."""
    from bnlint.report.sanitize import printable

    for key in OUTPUT_OPTIONS:
        path = options.get(key)
        if not path:
            continue
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            fail(f"{printable(path, None)}: cannot create its folder: {error.strerror or error}")


def config_files(resolver: Any, paths: Sequence[str]) -> list[str]:
    found = {resolver.resolve(path)[0].config_path for path in paths}
    return sorted(path for path in found if path)


def check_outputs(
    options: dict[str, Any], read: Sequence[str], *, final: bool = True
) -> dict[str, Any]:
    """Every output path checked before anything is written (bnlint.report.write): never an
    input, never given twice; exit 2 naming the path otherwise. ``final=False`` only
    compares with the inputs known so far (before the lint) and opens nothing."""
    from bnlint.report.sanitize import printable
    from bnlint.report.write import (
        UnsafeOutput,
        check_output_target,
        discard,
        input_identities,
        refuse_input_target,
    )

    targets: dict[str, Any] = {}
    seen: dict[Any, str] = {}
    for key in OUTPUT_OPTIONS:
        path = options.get(key)
        if not path:
            continue
        inputs = list(read)
        if options.get("baseline") and key != "write_baseline":
            inputs.append(options["baseline"])  # --write-baseline may update it in place
        names = {os.path.abspath(path), *input_identities([path])}
        problem = None
        if clash := next((seen[name] for name in names if name in seen), None):
            problem = f"given as two outputs ({printable(clash, None)} and this one)"
        seen.update(dict.fromkeys(names, path))
        try:
            if problem is None and final:
                targets[path] = check_output_target(path, inputs)
            elif problem is None:
                refuse_input_target(path, inputs)
        except UnsafeOutput as error:
            problem = str(error)
        if problem is not None:
            for target in targets.values():
                discard(target)
            fail(f"{printable(path, None)}: {problem}")
    return targets


def invocation_argv() -> list[str]:
    """``bnlint`` and the arguments this invocation was given (see DefaultGroup)."""
    context = click.get_current_context(silent=True)
    recorded = context.meta.get(INVOCATION) if context is not None else None
    return list(recorded) if recorded else ["bnlint", *sys.argv[1:]]
