"""``bnlint recalibrate MODEL --sample-data FILE -o OUT``: re-estimate running statistics.

Prints each layer's drift before and after (the same measures and thresholds as BN021),
writes nothing when the model is refused or cannot be run, and exits 2 with one line.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import click


def _fail(message: str) -> None:
    from bnlint.cli.output import fail
    from bnlint.report.sanitize import printable

    fail(printable(message, 1000))


@click.command("recalibrate")
@click.argument("model", type=click.Path())
@click.option(
    "--sample-data",
    required=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Representative served inputs (.npz by input name, or .npy).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the model (.onnx; .pt2, or a state dict for any other suffix).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    help="The per-layer drift before and after, as a table or JSON.",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    help="Use this configuration file instead of discovering one.",
)
@click.option(
    "--trust-model-code",
    is_flag=True,
    help="Allow loaders that execute code stored in model files (.pt2, TorchScript).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
def recalibrate(
    model: str,
    sample_data: str,
    output: str,
    output_format: str,
    config: str | None,
    trust_model_code: bool,
    debug: bool,
) -> None:
    """Re-estimate every BatchNorm's running statistics on served samples and write the model."""
    from bnlint.api import SettingsResolver
    from bnlint.config import ConfigError
    from bnlint.drift.profile import Thresholds
    from bnlint.drift.recalibrate import RecalibrationError
    from bnlint.drift.recalibrate import recalibrate as run
    from bnlint.drift.samples import SampleDataError, SampleFile
    from bnlint.drift.write import check_target
    from bnlint.loaders import LoadError, load_model
    from bnlint.rule import RuleInputError
    from bnlint.runtime import RunnerUnavailable

    target = Path(output)
    try:
        values: dict[str, Any] = {"sample_data": str(Path(sample_data).absolute())}
        if trust_model_code:
            values["trust_model_code"] = True
        resolver = SettingsResolver(values, config)
        settings, ruleset = resolver.resolve(model)
        inputs = [model, sample_data, *([settings.config_path] if settings.config_path else [])]
        check_target(target, inputs)
        samples = SampleFile(sample_data)
        graph = load_model(model, settings)
        inputs += list(graph.source.data_files)
        ctx = _context(ruleset, settings, model)
        thresholds = Thresholds.from_options(ctx.options)
        thresholds.check()
        result = run(graph, samples, thresholds)
        written = _write(graph, result, target, inputs, samples)
    except (ConfigError, LoadError, SampleDataError, RecalibrationError, RuleInputError) as error:
        _fail(str(error))
    except RunnerUnavailable as error:
        _fail(f"{model}: cannot run the model to measure its statistics: {error}")
    except Exception as error:  # an internal failure still ends in one line and exit 2
        if debug:
            traceback.print_exc()
        _fail(f"internal error: {type(error).__name__}: {error} (rerun with --debug)")
    if output_format == "json":
        report = _report(graph, result, written, ctx, resolver)
        click.echo(json.dumps(report, indent=2, allow_nan=False))
    else:
        click.echo(_table(result), nl=False)
    names = ", ".join(str(path) for path in written)
    click.echo(
        f"wrote {names}: {len(result.sites)} BatchNorm re-estimated on "
        f"{samples.count} samples ({result.passes} passes)",
        err=True,
    )
    sys.exit(0)


def _context(ruleset: Any, settings: Any, path: str) -> Any:
    from bnlint.rule import RuleContext

    rule = ruleset.get("BN021")
    return RuleContext(
        rule=rule,
        phase="inference",
        options={**rule.spec.options, **settings.rule_options.get(rule.name, {})},
        docs_url=settings.docs_url,
        file=path,
        sample_data=settings.sample_data,
    )


def _report(graph: Any, result: Any, written: list[Path], ctx: Any, resolver: Any) -> dict:
    """The JSON report of the model as it was (its BN021 findings, provenance), plus the
    ``recalibration``: each layer's drift before and after, and the files written."""
    from bnlint.cli.output import invocation_argv
    from bnlint.drift.findings import drift_findings
    from bnlint.engine import finalize_findings
    from bnlint.evidence.provenance import Invocation, collect, model_evidence
    from bnlint.findings import ModelResult, Report
    from bnlint.report.json_report import report_dict

    settings, ruleset = resolver.resolve(graph.path)
    findings = finalize_findings(
        list(drift_findings(result.before, ctx)), settings, ruleset, graph.path
    )
    model = ModelResult(graph.path, graph.facts.format, findings=findings)
    model.provenance = model_evidence(graph.path, settings, graph, ["BN021"])
    report = Report([model])
    report.provenance = collect(report, resolver, Invocation("cli", invocation_argv()))
    data = report_dict(report)
    data["recalibration"] = _json(result, written)
    return data


def _write(graph: Any, result: Any, target: Path, inputs: list, samples: Any) -> list[Path]:
    from bnlint.drift.write import write_onnx, write_torch

    if graph.source.onnx_model is not None:
        return write_onnx(graph, result, target, inputs)
    example = graph.source.example_inputs
    if example is None or (target.suffix == ".pt2" and graph.facts.format != "pt2"):
        example = _example_from_samples(samples, result.collector)
    return write_torch(graph, result, target, inputs, example)


def _example_from_samples(samples: Any, collector: Any) -> tuple:
    import numpy as np
    import torch

    bound = samples.bind(collector.inputs)
    _, feeds = next(samples.batches(bound, 2))
    tensors = []
    for spec in collector.inputs:
        values = feeds[spec.name]
        if len(values) < 2:
            values = np.concatenate([values, values])
        tensors.append(torch.from_numpy(np.ascontiguousarray(values)))
    return tuple(tensors)


def _summary(layer: Any) -> dict[str, Any]:
    import numpy as np

    measured = layer.measured
    shift = np.abs(layer.shift[measured])
    ratio = layer.ratio[measured]
    return {
        "max_mean_shift": float(shift.max(initial=0.0)),
        "variance_ratio_min": float(ratio.min(initial=np.inf)) if ratio.size else None,
        "variance_ratio_max": float(ratio.max(initial=0.0)) if ratio.size else None,
        "channels_beyond": int(layer.beyond.sum()),
        "mismatch": bool(layer.mismatch),
    }


def _json(result: Any, written: list[Path]) -> dict[str, Any]:
    from bnlint.findings import json_safe

    after = {layer.site.id: layer for layer in result.after.layers}
    layers = []
    for layer in result.before.layers:
        site = layer.site
        layers.append(
            {
                "bn": site.name,
                "depth": site.depth,
                "channels": site.channels,
                "before": _summary(layer),
                "after": _summary(after[site.id]) if site.id in after else None,
            }
        )
    return json_safe(
        {
            "written": [str(path) for path in written],
            "samples": result.before.samples,
            "passes": result.passes,
            "layers": layers,
        }
    )


def _table(result: Any) -> str:
    rows = _json(result, [])["layers"]
    width = max([len("BatchNorm")] + [len(row["bn"]) for row in rows])
    lines = [
        f"{'':<{width}}         {'before':<35} after\n",
        f"{'BatchNorm':<{width}}  depth  {'max shift  variance ratio':<35} "
        "max shift  variance ratio\n",
    ]
    for row in rows:
        lines.append(
            f"{row['bn']:<{width}}  {row['depth']:>5}  {_cell(row['before']):<35} "
            f"{_cell(row['after'])}\n"
        )
    return "".join(lines)


def _cell(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "—"
    low, high = summary["variance_ratio_min"], summary["variance_ratio_max"]
    ratio = f"×{low:.3g}…{high:.3g}" if isinstance(low, float) and isinstance(high, float) else "—"
    verdict = "MISMATCH" if summary["mismatch"] else "ok"
    shift = summary["max_mean_shift"]
    return f"{shift:>7.3f}σ {ratio:<16} {verdict}"
