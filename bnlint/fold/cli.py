"""``bnlint fold IN -o OUT``: fold, verify, then write the folded model.

``fold`` writes nothing unless every fold passes verification (exit 1 otherwise), never
overwrites its input, and writes atomically (external data stays external). The
``verify`` command is in :mod:`bnlint.fold.verify_cli`; it judges folds with the same
BN012 context (:func:`bn012_context`, :func:`tolerance_scale_for`).
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from bnlint.report.sanitize import printable


def _shapes(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> dict:
    from bnlint.config import parse_shape

    try:
        return dict(parse_shape(item) for item in value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def _fail(message: str) -> None:
    from bnlint.cli.output import fail

    fail(message)


def bn012_context(ruleset: Any, settings: Any, path: str) -> Any:
    """The fold-mismatch rule's context for judging a fold of ``path`` (phase inference)."""
    from bnlint.rule import RuleContext

    rule = ruleset.get("BN012")
    options = {**rule.spec.options, **settings.rule_options.get(rule.name, {})}
    return RuleContext(
        rule=rule,
        phase="inference",
        options=options,
        docs_url=settings.docs_url,
        file=path,
        verify=True,
    )


def tolerance_scale_for(given: float | None, ctx: Any) -> float:
    """``--tolerance-scale`` when given, else the fold-mismatch rule's option (1.0)."""
    return float(given if given is not None else ctx.options.get("tolerance-scale", 1.0))


def _refuse_input_target(target: Path, inputs: Sequence[Any]) -> None:
    """Exit 2 when ``target`` is (device and inode) one of the files read."""
    from bnlint.report.write import UnsafeOutput, refuse_input_target

    try:
        refuse_input_target(target, inputs)
    except UnsafeOutput as error:
        _fail(f"{printable(str(target), None)}: {error}")


def _inputs(source: Path, graph: Any, resolver: Any) -> list[Any]:
    """Every file the fold read: the model, its external data, the configuration."""
    found: list[Any] = [source]
    model = graph.source.onnx_model
    if model is not None:
        from bnlint.onnx.model_io import external_files

        found += sorted(external_files(model, source))
    file_config = resolver.config_for(source.absolute().parent)
    if file_config is not None and getattr(file_config, "path", None):
        found.append(file_config.path)
    return found


@click.command("fold")
@click.argument("model", type=click.Path())
@click.option(
    "-o",
    "--output",
    default=None,
    type=click.Path(dir_okay=False),
    help="Where to write the folded model (.onnx; .pt2 or .pt for PyTorch input).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Fold and verify, print every BatchNorm's verdict (why a BN cannot be folded), "
    "write nothing; -o is then not needed.",
)
@click.option(
    "--keep",
    multiple=True,
    metavar="REGEX",
    help="Leave BNs whose node name or module path matches REGEX unfolded.",
)
@click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    callback=_shapes,
    help="NAME:1x3x224x224 for the numeric check (repeatable).",
)
@click.option(
    "--tolerance-scale",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Multiply the numeric tolerance [default: 1.0].",
)
@click.option("--algebraic-only", is_flag=True, help="Skip the numeric level (no runtime).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    help="The fold table as text, or a JSON report (one BN012 verdict per BN).",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False),
    help="Use this configuration file instead of discovering one.",
)
@click.option(
    "--trust-model-code",
    is_flag=True,
    help="Allow loaders that execute code stored in model files.",
)
@click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
def fold(
    model: str,
    output: str | None,
    dry_run: bool,
    keep: tuple[str, ...],
    input_shapes: dict,
    tolerance_scale: float | None,
    algebraic_only: bool,
    output_format: str,
    config: str | None,
    trust_model_code: bool,
    debug: bool,
) -> None:
    """Fold every BatchNorm that folds exactly, verify the result, then write it."""
    import re

    from bnlint._perf import reuse_freed_memory
    from bnlint.api import SettingsResolver
    from bnlint.config import ConfigError
    from bnlint.fold.engine import FoldError, fold_graph
    from bnlint.loaders import LoadError, load_model

    if output is None and not dry_run:
        _fail("bnlint fold needs -o FOLDED (or --dry-run to see the verdicts and write nothing)")
    source, target = Path(model), Path(output) if output is not None else None
    if target is not None:
        _refuse_input_target(target, [source])
    reuse_freed_memory()  # the rewrite and verification free and reallocate layer-sized arrays
    _keep_heap_top()
    try:
        for pattern in keep:
            re.compile(pattern)
        values = {"input_shapes": input_shapes} if input_shapes else {}
        if trust_model_code:
            values["trust_model_code"] = True
        resolver = SettingsResolver(values, config)
        settings, ruleset = resolver.resolve(model)
        graph = load_model(model, settings)
        ctx = bn012_context(ruleset, settings, model)
        result = fold_graph(
            graph,
            keep=keep,
            input_shapes=settings.input_shapes,
            tolerance_scale=tolerance_scale_for(tolerance_scale, ctx),
            numeric=not algebraic_only,
        )
    except re.error as error:
        _fail(f"--keep: bad regular expression: {error}")
    except (ConfigError, LoadError) as error:
        _fail(str(error))
    except FoldError as error:
        text = str(error)
        _fail(text if text.startswith(str(model)) else f"{model}: {text}")
    except Exception as error:  # an internal failure still ends in one line and exit 2
        if debug:
            traceback.print_exc()
        _fail(f"internal error: {type(error).__name__}: {error} (rerun with --debug)")
    err = target is not None and _is_stdout(target)
    _report_fold(result, ctx, graph, output_format, resolver, err=err)
    if not result.verification.ok:
        click.echo("bnlint: fold failed verification; nothing written", err=True)
        sys.exit(1)
    if target is None:  # --dry-run
        return
    inputs = _inputs(source, graph, resolver)
    _refuse_input_target(target, inputs)
    _write(result, graph, source, target, inputs)


def _keep_heap_top() -> None:
    """With a fixed mmap threshold glibc still returns the free top of the heap to the
    system as soon as it exceeds 128 KB, so each layer-sized array freed at the top is
    page-faulted in again by the next (ResNet-50: 242,000 minor faults against 163,000
    when up to 256 MB stay). A one-shot command can keep them."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
        except (OSError, AttributeError):
            pass


def _report_fold(
    result: Any, ctx: Any, graph: Any, output_format: str, resolver: Any, err: bool = False
) -> None:
    from bnlint.findings import ModelResult, Report
    from bnlint.fold.report import verification_findings, verification_section
    from bnlint.report.verification import table_lines

    verification = result.verification
    findings = verification_findings(verification, ctx)
    section = verification_section(verification)
    if output_format == "json":
        from bnlint.cli.output import invocation_argv
        from bnlint.evidence.provenance import Invocation, collect, model_evidence
        from bnlint.report.json_report import report_dict

        model = ModelResult(graph.path, graph.facts.format, findings=findings)
        model.verification = section
        model.provenance = model_evidence(graph.path, resolver.resolve(graph.path)[0], graph)
        report = Report([model])
        report.provenance = collect(report, resolver, Invocation("cli", invocation_argv()))
        import json

        click.echo(json.dumps(report_dict(report), indent=2, allow_nan=False), err=err)
        return
    click.echo("\n".join(table_lines(section)), err=err)
    from bnlint.report.text import finding_line

    for finding in findings:
        click.echo(finding_line(graph.path, finding), err=err)


def _write(result: Any, graph: Any, source: Path, target: Path, inputs: list[Any]) -> None:
    folded = sum(1 for record in result.records if record.status == "folded")
    if folded == 0:
        total = len(result.records)
        why = (
            "the model has no BatchNormalization"
            if not total
            else (f"none of its {total} BatchNormalization can be folded exactly (reasons above)")
        )
        click.echo(f"bnlint: nothing was folded: {why}; writing an unchanged copy", err=True)
    try:
        if result.format == "onnx":
            written = _write_onnx(result.folded, graph, source, target, inputs)
        else:
            written = [_write_torch(result.folded, graph, target)]
    except OSError as error:
        _fail(f"{target}: cannot write: {error.strerror or error}")
    names = ", ".join(printable(str(path), None) for path in written)
    click.echo(f"wrote {names}: {folded} of {len(result.records)} BatchNorm folded", err=True)


def _write_onnx(
    folded: Any, graph: Any, source: Path, target: Path, inputs: list[Any]
) -> list[Path]:
    from bnlint.fold.engine import check_onnx
    from bnlint.onnx.model_io import (
        PROTOBUF_LIMIT,
        FoldIOError,
        external_files,
        save_atomic,
        serialized_size,
        uses_external_data,
    )

    original = graph.source.onnx_model
    external = uses_external_data(original)
    if not external and _may_exceed(source, PROTOBUF_LIMIT):
        external = serialized_size(folded) > PROTOBUF_LIMIT
    data_file = (target.absolute().parent / (target.name + ".data")).resolve()
    if external and data_file in external_files(original, source):
        _fail(f"{data_file}: refusing to overwrite the input model's external data")
    if external:
        _refuse_input_target(data_file, inputs)
    if _special(target):  # /dev/null, /dev/stdout, a FIFO: written in place, never replaced
        return [_write_in_place(folded, target, inputs, external)]

    def checked(staged: Path) -> str | None:
        """The checker on the written file (one serialization, read back by C++)."""
        problem = check_onnx(str(staged))
        if problem is not None and check_onnx(original) is None:
            return f"the folded model fails onnx.checker: {problem}"
        return None

    try:
        return save_atomic(folded, target, external=external, check=None if external else checked)
    except FoldIOError as error:
        _fail(str(error))
    return []


def _is_stdout(target: Path) -> bool:
    """Whether the folded model goes to stdout (the report then goes to stderr)."""
    from bnlint.report.write import own_descriptor

    if own_descriptor(str(target)) == 1:
        return True
    try:
        return os.path.samestat(os.stat(target), os.fstat(1))
    except (OSError, ValueError):
        return False


def _special(target: Path) -> bool:
    """Whether ``target`` is this process's own descriptor (``/dev/stdout``, directly or
    through symlinks) or exists and is not a regular file: written in place, never
    replaced by a renamed file."""
    import stat

    from bnlint.report.write import own_descriptor

    if own_descriptor(str(target)) is not None:
        return True
    try:
        return not stat.S_ISREG(os.stat(target).st_mode)
    except OSError:
        return False


def _write_in_place(folded: Any, target: Path, inputs: list[Any], external: bool) -> Path:
    from bnlint.report.write import UnsafeOutput, check_output_target, discard, write_output

    try:
        checked = check_output_target(target, inputs)
    except UnsafeOutput as error:
        _fail(f"{printable(str(target), None)}: {error}")
    if external:
        discard(checked)
        _fail(f"{printable(str(target), None)}: a model with external data needs a folder")
    try:
        write_output(checked, folded.SerializeToString())
    except (OSError, UnsafeOutput) as error:
        _fail(f"{printable(str(target), None)}: cannot write: {error}")
    return target


def _may_exceed(source: Path, limit: int) -> bool:
    """Whether a fold of ``source`` should be measured against ``limit`` (measuring a 100 MB
    model costs a fifth of a second). A fold grows a model only by cloning shared weights;
    below an eighth of the limit that is not measured (a pathological model that still
    overflows fails to serialize, and the write reports it: nothing is written)."""
    try:
        return source.stat().st_size * 8 > limit
    except OSError:
        return True


def _write_torch(folded: Any, graph: Any, target: Path) -> Path:
    import tempfile

    import torch

    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.absolute().parent)
    os.close(handle)
    try:
        if target.suffix == ".pt2":
            inputs = graph.source.example_inputs
            if inputs is None:
                _fail("writing a .pt2 needs example inputs (--input-shape)")
            program = torch.export.export(folded.eval(), tuple(inputs))
            torch.export.save(program, temporary)
        else:
            torch.save(folded.state_dict(), temporary)
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target
