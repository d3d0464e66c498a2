"""``bnlint verify PATH [--against ORIGINAL]``: judge folds without writing anything.

Without ``--against`` it is ``check --verify`` restricted to the dynamic rules (BN012,
BN018); with ``--against`` it audits a fold made by any tool and reports one BN012 verdict
per BN of the original model, in every output format ``check`` has. ``bnlint fold``, which
writes the folded model, is in :mod:`bnlint.fold.cli`.
"""

from __future__ import annotations

import traceback
from collections.abc import Sequence
from typing import Any

import click

from bnlint.cli.options import check_options, settings_from_options
from bnlint.fold.cli import bn012_context, tolerance_scale_for


@click.command("verify")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--against",
    type=click.Path(),
    default=None,
    metavar="ORIGINAL",
    help="Audit PATH as a fold of ORIGINAL made by any tool.",
)
@click.option(
    "--tolerance-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="With --against: multiply the numeric tolerance [default: the fold-mismatch "
    "rule's tolerance-scale, 1.0].",
)
@check_options
def verify(
    paths: Sequence[str], against: str | None, tolerance_scale: float | None, **options: Any
) -> None:
    """Verify folds: run BN012/BN018 on models, or audit FOLDED --against ORIGINAL."""
    from bnlint.api import SettingsResolver
    from bnlint.cli.output import emit_report, fail
    from bnlint.config import ConfigError
    from bnlint.engine.registry import RegistryError

    values = settings_from_options(options)
    values["verify"] = True
    if against is None and not values.get("select"):
        values["select"] = ("BN012", "BN018")
    try:
        resolver = SettingsResolver(values, options["config"])
        if against is None:
            report = _verify_models(paths, resolver, options)
        else:
            if len(paths) != 1:
                raise click.BadParameter("verify --against takes exactly one folded model")
            report = _audit(paths[0], against, resolver, tolerance_scale)
    except (ConfigError, RegistryError, click.BadParameter) as error:
        fail(str(error))
    except Exception as error:
        if options["debug"]:
            traceback.print_exc()
        fail(f"internal error: {type(error).__name__}: {error} (rerun with --debug)")
    emit_report(report, options, resolver)


def _verify_models(paths: Sequence[str], resolver: Any, options: dict) -> Any:
    from bnlint.api import iter_targets, lint_target
    from bnlint.findings import Report

    targets = list(iter_targets(paths or ["."], resolver))
    return Report(models=[lint_target(target, resolver) for target in targets])


def _audit(
    folded_path: str, original_path: str, resolver: Any, tolerance_scale: float | None
) -> Any:
    from bnlint.engine import effective_phase, finalize_findings
    from bnlint.evidence.provenance import model_evidence
    from bnlint.findings import ModelResult, Report
    from bnlint.fold.auditor import audit
    from bnlint.fold.report import verification_findings, verification_section
    from bnlint.fold.results import FoldError
    from bnlint.loaders import LoadError, load_model

    settings, ruleset = resolver.resolve(folded_path)
    graphs = []
    for path in (original_path, folded_path):
        try:
            graphs.append(load_model(path, resolver.resolve(path)[0]))
        except LoadError as error:
            return Report([ModelResult(path, status="error", error=error.problem)])
    ctx = bn012_context(ruleset, settings, folded_path)
    try:
        result = audit(
            graphs[0],
            graphs[1],
            input_shapes=settings.input_shapes,
            tolerance_scale=tolerance_scale_for(tolerance_scale, ctx),
        )
    except FoldError as error:
        return Report([ModelResult(folded_path, status="error", error=str(error))])
    verification = result.verification
    findings = verification_findings(verification, ctx)
    findings = finalize_findings(findings, settings, ruleset, folded_path)
    model = ModelResult(folded_path, graphs[1].facts.format, findings=findings)
    model.verification = verification_section(verification)
    # what the audit checked: the original's BatchNorms against BN012 (the folded model has
    # none left, and no lint rule ran on it)
    model.batchnorms = len(verification.records)
    model.provenance = model_evidence(folded_path, settings, graphs[1], ["BN012"])
    model.phase = effective_phase(graphs[1], settings)
    return Report([model])
