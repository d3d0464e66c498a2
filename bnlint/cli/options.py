"""Reusable Click options (pip-tools style) and their translation into settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import IO, Any

import click

from bnlint.config import FAIL_ON, FORMATS, parse_shape
from bnlint.rule import PHASES, TARGET_DTYPES


def _codes(value: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(code.strip() for item in value for code in item.split(",") if code.strip())


def _shape(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict:
    try:
        return dict(parse_shape(item) for item in value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


CHECK_OPTIONS: list[Callable] = [
    click.option(
        "--select",
        multiple=True,
        help="Rules to enable (code, prefix, name or ALL); replaces the configured set.",
    ),
    click.option(
        "--extend-select", multiple=True, help="Rules to enable in addition to the configured set."
    ),
    click.option("--ignore", multiple=True, help="Rules to disable (code, prefix or name)."),
    click.option(
        "--fail-on",
        type=click.Choice(FAIL_ON),
        default=None,
        help="Lowest severity that makes the exit code 1 [default: warning].",
    ),
    click.option(
        "--exit-zero",
        is_flag=True,
        help="Exit 0 even when findings reach --fail-on (unreadable inputs still exit 2).",
    ),
    click.option(
        "--format",
        "output_format",
        type=click.Choice(FORMATS),
        default=None,
        help="Output format [default: text].",
    ),
    click.option(
        "-o",
        "--output",
        type=click.Path(dir_okay=False, writable=True),
        help="Write the report to FILE instead of stdout.",
    ),
    click.option(
        "--report-html",
        type=click.Path(dir_okay=False, writable=True),
        help="Also write a self-contained HTML report to FILE (beside any --format).",
    ),
    click.option(
        "--report-md",
        type=click.Path(dir_okay=False, writable=True),
        help="Also write a Markdown summary to FILE (e.g. $GITHUB_STEP_SUMMARY).",
    ),
    click.option(
        "--baseline",
        type=click.Path(dir_okay=False),
        help="Compare with a baseline: only findings not in FILE fail; fixed ones are listed.",
    ),
    click.option(
        "--write-baseline",
        type=click.Path(dir_okay=False, writable=True),
        help="Write the current findings to FILE as a baseline (exit 0 unless unreadable).",
    ),
    click.option(
        "--show-known",
        is_flag=True,
        help="With --baseline, also list the findings already in the baseline "
        "(text, github, gitlab and junit list only new ones by default).",
    ),
    click.option(
        "-j",
        "--jobs",
        type=click.IntRange(min=0),
        default=None,
        help="Lint models in N parallel processes (0: one per CPU) [default: 1].",
    ),
    click.option(
        "--config",
        type=click.Path(exists=True, dir_okay=False),
        help="Use this configuration file instead of discovering one.",
    ),
    click.option(
        "--phase",
        type=click.Choice(PHASES),
        default=None,
        help="What the model is for [default: from the model].",
    ),
    click.option(
        "--train-batch-size",
        type=click.IntRange(min=1),
        default=None,
        help="Per-device training batch size.",
    ),
    click.option(
        "--input-shape",
        "input_shapes",
        multiple=True,
        callback=_shape,
        help="NAME:1x3x224x224 (repeatable).",
    ),
    click.option(
        "--target-dtype",
        type=click.Choice(TARGET_DTYPES),
        default=None,
        help="Deployment dtype (drives folding hazards).",
    ),
    click.option(
        "--rules-dir",
        "rules_dirs",
        multiple=True,
        type=click.Path(file_okay=False),
        help="Also load rule modules from DIR.",
    ),
    click.option(
        "--allowed-data-root",
        "allowed_data_roots",
        multiple=True,
        type=click.Path(file_okay=False),
        help="Also read ONNX external data from inside DIR (repeatable).",
    ),
    click.option(
        "--arch",
        metavar="MODULE:FACTORY",
        default=None,
        help="Architecture for a bare checkpoint (imports and runs your factory).",
    ),
    click.option(
        "--trust-model-code",
        is_flag=True,
        help="Allow loaders that execute code stored in model files (pickles, TorchScript, .pt2).",
    ),
    click.option(
        "--verify",
        is_flag=True,
        help="Run the dynamic checks: fold verification (BN012) and batch independence (BN018).",
    ),
    click.option(
        "--sample-data",
        type=click.Path(dir_okay=False),
        default=None,
        metavar="FILE",
        help="Served inputs (.npz by input name, or .npy): compare each BN's running "
        "statistics with them (BN021).",
    ),
    click.option(
        "--statistics", is_flag=True, help="Show counts per rule instead of individual findings."
    ),
    click.option("-q", "--quiet", is_flag=True, help="Print findings only (no summary, no hints)."),
    click.option(
        "--color",
        type=click.Choice(["auto", "always", "never"]),
        default="auto",
        help="Colour terminal output [default: auto].",
    ),
    click.option(
        "--show-settings",
        is_flag=True,
        help="Print the resolved settings for each input (as bnlint.toml) and where each "
        "value came from.",
    ),
    click.option(
        "--print-config",
        is_flag=True,
        help="Print the resolved configuration as a bnlint.toml that configures the same run.",
    ),
    click.option("--debug", is_flag=True, help="Show tracebacks for internal errors."),
]


def check_options(function: Callable) -> Callable:
    for option in reversed(CHECK_OPTIONS):
        function = option(function)
    return function


def settings_from_options(options: dict[str, Any]) -> dict[str, Any]:
    """Only the options the user gave, as Settings fields (so config values survive)."""
    values: dict[str, Any] = {}
    for name in ("select", "extend_select", "ignore"):
        if options.get(name):
            values[name] = _codes(options[name])
    direct = {
        "fail_on": "fail_on",
        "output_format": "format",
        "phase": "phase",
        "train_batch_size": "train_batch_size",
        "target_dtype": "target_dtype",
        "arch": "arch",
        "jobs": "jobs",
    }
    for option, field_name in direct.items():
        if options.get(option) is not None:
            values[field_name] = options[option]
    if options.get("input_shapes"):
        values["input_shapes"] = options["input_shapes"]
    for name in ("rules_dirs", "allowed_data_roots"):
        if options.get(name):
            values[name] = tuple(os.path.abspath(d) for d in options[name])
    if options.get("trust_model_code"):
        values["trust_model_code"] = True
    if options.get("verify"):
        values["verify"] = True
    if options.get("sample_data"):
        values["sample_data"] = os.path.abspath(options["sample_data"])
    return values


def color_enabled(choice: str, stream: IO[str]) -> bool:
    """``--color``, then NO_COLOR / FORCE_COLOR (https://no-color.org), then a TTY check."""
    if choice == "always":
        return True
    if choice == "never":
        return False
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return bool(getattr(stream, "isatty", lambda: False)())
