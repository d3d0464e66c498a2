"""Command line: ``bnlint [OPTIONS] PATH...`` (= ``bnlint check``), ``rules``, ``explain``.

Thin by design: options become settings, :mod:`bnlint.api` does the work, a reporter
renders the Report, and :meth:`Report.exit_code` decides the exit status. Heavy modules
(onnx, networkx, numpy, reporters) are imported inside commands, so ``--version`` and
``--help`` stay fast.
"""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import click

from bnlint._version import __version__
from bnlint.cli.options import check_options, settings_from_options
from bnlint.cli.output import (
    INVOCATION,
    STARTED,
    check_outputs,
    config_files,
    emit_report,
    fail,
    silence_stdout,
)

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class DefaultGroup(click.Group):
    """A group whose default command is ``check``: ``bnlint m.onnx`` is ``bnlint check m.onnx``."""

    default_command = "check"
    # Commands whose modules load only when named (or listed by --help): `bnlint model.onnx`
    # pays for neither the fold nor the drift command line.
    lazy_commands: ClassVar[dict[str, tuple[str, str]]] = {
        "fold": ("bnlint.fold.cli", "fold"),
        "verify": ("bnlint.fold.verify_cli", "verify"),
        "recalibrate": ("bnlint.drift.cli", "recalibrate"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy_commands and name not in self.commands:
            import importlib

            module, attribute = self.lazy_commands[name]
            self.add_command(getattr(importlib.import_module(module), attribute), name)
        return super().get_command(ctx, name)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # The arguments as invoked (not sys.argv, which is another program's under
        # CliRunner or when main() is called from Python), for the report's provenance.
        from bnlint.evidence.provenance import (
            utc_now,  # standard library only: --version stays fast
        )

        ctx.meta.setdefault(INVOCATION, ["bnlint", *args])
        ctx.meta.setdefault(STARTED, utc_now())
        if not args:
            args = [self.default_command]
        elif args[0] not in self.list_commands(ctx) and args[0] not in (
            "--help",
            "-h",
            "--version",
        ):
            self._refuse_misspelled_command(args[0])
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `bnlint rules | head`: not an error of bnlint's
            silence_stdout()
            ctx.exit(0)
        except KeyboardInterrupt:  # Ctrl-C: one line, the shell's code for SIGINT
            click.echo("bnlint: interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)

    def _refuse_misspelled_command(self, word: str) -> None:
        """``bnlint chek m.onnx``: a bare word that is no file but close to a command is a
        typo (ruff and git say so), not a model path."""
        import difflib

        if word.startswith("-") or not word.isidentifier() or os.path.lexists(word):
            return
        close = difflib.get_close_matches(word, self.list_commands(click.Context(self)), 1, 0.6)
        if close:
            fail(f"no such command {word!r}; did you mean {close[0]!r}? (see `bnlint --help`)")


@click.group(
    cls=DefaultGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", prog_name="bnlint", message="%(prog)s %(version)s")
def main() -> None:
    """Lint Batch Normalization in ONNX and PyTorch models.

    \b
    bnlint model.onnx                 lint a model (same as `bnlint check model.onnx`)
    bnlint models/ --format json      lint every model in a folder, JSON output
    bnlint rules                      list the rules
    bnlint explain BN003              show a rule's documentation
    """
    # Model numbers are attacker-controlled: a signalling NaN raises NumPy's "invalid value"
    # warning even where the NaN is then reported as a finding. The terminal gets findings
    # and one-line errors only.
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    # Whatever a command prints, no escape sequence or invisible character from a model,
    # a path or a report reaches the terminal raw (bnlint.report.sanitize).
    from bnlint.report.sanitize import guard_terminal

    guard_terminal()


@main.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
@check_options
def check(paths: Sequence[str], **options: Any) -> None:
    """Lint model files, folders of models, or `module:factory` entry points."""
    from bnlint.api import SettingsResolver, iter_targets, lint_many
    from bnlint.config import ConfigError
    from bnlint.engine.registry import RegistryError
    from bnlint.findings import Report
    from bnlint.report import extras_for
    from bnlint.report.progress import Progress
    from bnlint.report.sanitize import unguarded

    debug = options["debug"]
    try:
        resolver = SettingsResolver(settings_from_options(options), options["config"])
        on_skip = None if options["quiet"] else _note_skipped
        targets = list(iter_targets(paths or ["."], resolver, on_skip))
        if options["show_settings"] or options["print_config"]:
            _show_settings(resolver, targets or list(paths or ["."]), options["show_settings"])
            return
        run_settings, _ = resolver.resolve(options["config"] or os.getcwd())
        samples = [run_settings.sample_data] if run_settings.sample_data else []
        check_outputs(options, [*targets, *config_files(resolver, targets), *samples], final=False)
        _check_sample_data(run_settings.sample_data)
        formats = [options["output_format"] or run_settings.format]
        formats += ["html"] if options["report_html"] else []
        formats += ["markdown"] if options["report_md"] else []
        progress = Progress(len(targets), unguarded(sys.stderr))  # its own escape codes
        try:
            models = lint_many(
                targets,
                resolver,
                jobs=run_settings.jobs,
                extras=extras_for(formats),
                hash_files=formats != ["text"] or bool(options.get("baseline")),
                debug=_debug_printer(debug),
                on_result=lambda result: progress.advance(result.path),
            )
        finally:
            progress.close()
        report = Report(models=models)
    except (ConfigError, RegistryError, click.BadParameter) as error:
        if debug:
            traceback.print_exc()
        from bnlint.report.sanitize import printable

        fail(printable(str(error), 1000))
    except BrokenPipeError:
        raise  # the reader of stdout went away (DefaultGroup.invoke)
    except Exception as error:  # an internal failure still ends in one line and exit 2
        if debug:
            traceback.print_exc()
        from bnlint.report.sanitize import printable

        problem = printable(f"{type(error).__name__}: {error}", 500)
        fail(f"internal error: {problem} (rerun with --debug)")
    emit_report(report, options, resolver)


def _note_skipped(folder: str, names: list[str]) -> None:
    """A folder walk left out files named like models (``weights.pth.tar``): say so."""
    from bnlint.report.sanitize import printable

    shown = ", ".join(printable(os.path.relpath(name, folder), 200) for name in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    click.echo(
        f"bnlint: note: {printable(folder, None)}: not linted: {shown}{more} (names outside "
        "`include`, or symlinks out of the folder; name a file on the command line to lint it)",
        err=True,
    )


def _check_sample_data(path: str | None) -> None:
    """A --sample-data file unusable for any model fails the run before anything is linted."""
    if path:
        from bnlint.drift.samples import SampleDataError, SampleFile
        from bnlint.report.sanitize import printable

        try:
            SampleFile(path)
        except SampleDataError as error:
            fail(printable(str(error), 1000))


def _debug_printer(enabled: bool):
    if not enabled:
        return None
    return lambda text: click.echo(text, err=True)


def _show_settings(resolver: Any, targets: list[str], origins: bool) -> None:
    """The resolved configuration as a ``bnlint.toml`` that configures the same run: only
    keys a configuration file accepts; ``origins`` adds where each value came from."""
    from bnlint.evidence.settings_record import FLAG_FIELDS, settings_origins, settings_table
    from bnlint.report.sanitize import printable
    from bnlint.toml_writer import toml_text

    for index, target in enumerate(targets if origins else targets[:1]):
        settings, _ = resolver.resolve(target)
        where = printable(settings.config_path or "none (defaults)", None)
        flags = ", ".join(
            f"{key} = {str(getattr(settings, name)).lower()}" for name, key in FLAG_FIELDS.items()
        )
        header = (
            f"{printable(target, None)}: configuration {where}\n"
            "bnlint.toml keys (in pyproject.toml: under [tool.bnlint], tables as "
            f"[tool.bnlint.NAME]); command line only: {flags}"
        )
        where_from = settings_origins(settings)
        table = {  # an empty default says nothing (and rules-dir = [] is a trust key)
            key: value
            for key, value in settings_table(settings).items()
            if value not in ([], {}) or where_from.get(key) != "default"
        }
        text = toml_text(table, header, where_from if origins else None)
        click.echo(("\n" if index else "") + text, nl=False)


@main.command(
    "hook",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
    add_help_option=False,
)
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def hook(ctx: click.Context, argv: tuple[str, ...]) -> None:
    """Entry point of the pre-commit hooks: `bnlint check`, but every argument that names an
    existing file is a file to lint, never an option (see bnlint.cli.precommit)."""
    from bnlint.cli.precommit import split_argv

    options, files = split_argv(argv, check)
    with check.make_context("check", [*options, "--", *files], parent=ctx) as checking:
        check.invoke(checking)


@main.command("rules")
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text")
@click.option("--rules-dir", "rules_dirs", multiple=True, type=click.Path(file_okay=False))
def list_rules(output_format: str, rules_dirs: tuple[str, ...]) -> None:
    """List every rule, plug-ins included: code, name, default severity, summary."""
    from bnlint.engine.registry import RegistryError, load_rules

    try:
        ruleset = load_rules(tuple(rules_dirs))
    except RegistryError as error:
        fail(str(error))
    if output_format == "json":
        import json

        from bnlint.engine.formats import rule_formats

        rows = [
            {
                "code": rule.code,
                "name": rule.name,
                "severity": rule.spec.severity.label,
                "summary": rule.summary,
                "phases": sorted(rule.spec.phases),
                "needs": sorted(rule.spec.needs),
                "formats": rule_formats(rule),  # evidence per input format (docs/pytorch.md)
                "since": rule.spec.since,
                "origin": rule.origin,
                "options": dict(rule.spec.options),
                "url": rule.url(),
            }
            for rule in ruleset
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    for rule in ruleset:
        click.echo(f"{rule.code}  {rule.name:<40} {rule.spec.severity.label:<8} {rule.summary}")


@main.command("explain")
@click.argument("code")
@click.option("--rules-dir", "rules_dirs", multiple=True, type=click.Path(file_okay=False))
def explain(code: str, rules_dirs: tuple[str, ...]) -> None:
    """Print a rule's documentation (by code or name), plug-in rules included."""
    from bnlint.engine.registry import RegistryError, load_rules, redirect

    try:
        rule = load_rules(tuple(rules_dirs)).get(code)
    except RegistryError as error:
        fail(str(error))
    if rule is None:
        fail(f"unknown rule {code!r} (see `bnlint rules`)")
    if redirect(code) != code.strip():
        click.echo(f"bnlint: note: {code.strip()} was renamed to {rule.code}", err=True)
    import inspect

    header = f"# {rule.code} {rule.name}\n\nDefault severity: {rule.spec.severity.label}"
    header += f" · phases: {', '.join(sorted(rule.spec.phases))} · since {rule.spec.since}"
    if rule.spec.options:
        header += "\nOptions: " + ", ".join(f"{k} = {v!r}" for k, v in rule.spec.options.items())
    if not rule.is_builtin:
        header += f"\nFrom: {rule.origin} ({rule.module})"
    url = rule.url()
    if url:
        header += f"\nDocumentation: {url}"
    click.echo(f"{header}\n\n{inspect.cleandoc(rule.doc)}")
