"""The Python API: ``bnlint.lint(target, **settings) -> Report``. The CLI is a thin layer on it."""

from __future__ import annotations

import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from bnlint._perf import reuse_freed_memory
from bnlint.config import (
    ConfigError,
    FileConfig,
    Settings,
    find_config,
    load_file_config,
    resolve_settings,
    validate_against_rules,
)
from bnlint.engine.registry import RuleSet, load_rules
from bnlint.findings import ModelResult, Report
from bnlint.rule import RuleInputError

FOLDER = "folder"  # ModelResult.format of a folder that held no model file
_SETTING_NAMES = {item.name for item in fields(Settings)} - {"origins", "config_path"}


class SettingsResolver:
    """Settings per model: the nearest configuration file (or ``--config``) plus CLI values."""

    def __init__(self, cli_values: Mapping[str, Any], config: str | Path | None = None) -> None:
        unknown = set(cli_values) - _SETTING_NAMES
        if unknown:
            raise ConfigError(None, f"unknown setting(s): {', '.join(sorted(unknown))}")
        self.cli_values = dict(cli_values)
        self.config = config
        self.forced = load_file_config(Path(config)) if config is not None else None
        self._by_file: dict[str | None, tuple[Settings, RuleSet]] = {}

    def config_for(self, folder: Path) -> FileConfig | None:
        if self.forced is not None:
            return self.forced
        found = find_config(folder)
        return load_file_config(found, discovered=True) if found is not None else None

    def resolve(self, target: str | Path) -> tuple[Settings, RuleSet]:
        path = Path(target)
        folder = path if path.is_dir() else path.parent
        if not folder.exists():
            folder = Path.cwd()
        file_config = self.config_for(folder)
        key = str(file_config.path) if file_config is not None else None
        if key not in self._by_file:
            settings = resolve_settings(file_config, self.cli_values)
            ruleset = load_rules(tuple(settings.rules_dirs))
            self._by_file[key] = (validate_against_rules(settings, ruleset), ruleset)
        return self._by_file[key]


def iter_targets(
    paths: Iterable[str | Path],
    resolver: SettingsResolver,
    on_skip: Callable[[str, list[str]], None] | None = None,
) -> Iterator[str]:
    """Files as given; folders walked for model files (include/exclude from settings).

    A folder holding no model file is yielded itself, so that linting it fails with "no
    model files found under …" (exit 2) instead of passing silently. ``on_skip(folder,
    names)`` hears of files a walk left out although their names look like models
    (``weights.pth.tar``, ``pytorch_model.bin``).
    """
    from bnlint.loaders import is_entry_point

    for raw in paths:
        target = str(raw)
        path = Path(target)
        if is_entry_point(target) or not path.is_dir():
            yield target
            continue
        settings, _ = resolver.resolve(path)
        found, skipped = walk(path, settings)
        if found and skipped and on_skip is not None:
            on_skip(target, skipped)
        yield from found if found else [target]


MODEL_SUFFIXES = frozenset(
    {".onnx", ".onnxtxt", ".pt", ".pth", ".pt2", ".ckpt", ".bin", ".ts", ".ptl", ".safetensors"}
)


def walk(root: Path, settings: Settings) -> tuple[list[str], list[str]]:
    """(model files under ``root``, files left out: names that look like models, and
    symlinks to files outside ``root``)."""
    import fnmatch

    from bnlint.loaders import leaves_folder

    found, skipped = [], []
    for folder, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(
            d for d in dirnames if not any(fnmatch.fnmatch(d, pat) for pat in settings.exclude)
        )
        for name in sorted(filenames):
            if any(fnmatch.fnmatch(name, pat) for pat in settings.exclude):
                continue
            if leaves_folder(Path(folder) / name, root):  # a symlink out of the walk: data
                skipped.append(str(Path(folder) / name))
            elif any(fnmatch.fnmatch(name, pat) for pat in settings.include):
                found.append(str(Path(folder) / name))
            elif MODEL_SUFFIXES.intersection(suffix.lower() for suffix in Path(name).suffixes):
                skipped.append(str(Path(folder) / name))
    return found, skipped


def no_models_problem(folder: str, settings: Settings) -> str:
    """Why linting ``folder`` found nothing, and what would."""
    _, skipped = walk(Path(folder), settings)
    text = f"no model files found under it (include = {', '.join(settings.include)})"
    if skipped:
        names = ", ".join(os.path.relpath(name, folder) for name in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        text += f"; left out: {names}{more} (name a file on the command line to lint it)"
    return text


def lint_loaded(
    graph: Any,
    settings: Settings,
    ruleset: RuleSet,
    extras: Sequence[str] = (),
    *,
    debug: Callable[[str], None] | None = None,
) -> ModelResult:
    """Lint a loaded graph, then compute the report data ``extras`` names while it is alive."""
    from bnlint.engine import lint_graph

    result = lint_graph(graph, settings, ruleset, debug=debug)
    from bnlint.loaders import locate_constructor_causes

    result.findings = locate_constructor_causes(graph, result.findings)
    if extras:
        from bnlint.report.report_data import build_report_data

        build_report_data(graph, result, extras)
    return result


def lint_target(
    target: str,
    resolver: SettingsResolver,
    debug: Callable[[str], None] | None = None,
    extras: tuple[str, ...] = (),
    hash_files: bool = True,
) -> ModelResult:
    """Load and lint one input; a load failure becomes an ``error`` result, never a raise.

    ``extras`` names report data (``bn_table``, ``neighborhood``) computed from the graph
    before it is dropped; the result never holds the graph, so it pickles small.
    ``hash_files=False`` skips the sha256 of the model for outputs that do not show it.
    """
    from bnlint.engine import applicable_rules
    from bnlint.evidence.provenance import model_evidence
    from bnlint.loaders import LoadError, load_model

    settings, ruleset = resolver.resolve(target)
    if Path(target).is_dir():  # a folder the walk found no model in (iter_targets)
        problem = no_models_problem(target, settings)
        result = ModelResult(path=target, format=FOLDER, status="error", error=problem)
        result.provenance = model_evidence(target, settings, read=False)
        return result
    try:
        graph = load_model(target, settings)
    except LoadError as error:
        if debug is not None and error.__cause__ is not None:  # the reader's own failure
            debug("".join(traceback.format_exception(error.__cause__)))
        result = ModelResult(path=target, status="error", error=error.problem)
        if error.user_traceback:
            result.user_traceback = error.user_traceback
        result.provenance = model_evidence(target, settings, read=False)
        return result
    try:
        result = lint_loaded(graph, settings, ruleset, extras, debug=debug)
    except RuleInputError as error:  # e.g. a --sample-data file this model cannot use
        result = ModelResult(path=target, status="error", error=str(error))
        result.provenance = model_evidence(target, settings, read=hash_files)
        return result
    if any(finding.location.get("source_file") for finding in result.findings):
        result.findings = _repository_sources(target, result.findings)
    result.data_files = list(graph.source.data_files)  # outputs may not overwrite these
    rules_run = [rule.code for rule in applicable_rules(graph, settings, ruleset, result.phase)[0]]
    result.provenance = model_evidence(target, settings, graph, rules_run, read=hash_files)
    return result


def _repository_sources(target: str, findings: list[Any]) -> list[Any]:
    """Python source paths relative to the repository of the model
    (:mod:`bnlint.evidence.source_paths`); for a model file, constructor-caused findings
    then point at the statement that built their layer (:mod:`bnlint.loaders.torch_definitions`;
    an entry point's live module was located in :func:`lint_loaded`)."""
    from bnlint.evidence.source_paths import relative_sources
    from bnlint.loaders import is_entry_point, locate_in_repository
    from bnlint.report.baseline import project_root

    if is_entry_point(target):
        return relative_sources(findings, project_root(Path.cwd()))
    root = project_root(Path(target).absolute().parent)
    return locate_in_repository(relative_sources(findings, root), root)


class WorkerError(Exception):
    """An internal error in a worker process, carried back as text (always picklable)."""


_worker: dict[str, Any] = {}


def _worker_init(
    cli_values: dict[str, Any], config: str | Path | None, debug: bool, warning_filters: list
) -> None:
    warnings.filters[:] = warning_filters  # a spawned worker starts with Python's defaults
    reuse_freed_memory()  # a forkserver or spawned worker does not inherit the parent's
    _worker["resolver"] = SettingsResolver(cli_values, config)
    _worker["debug"] = (lambda text: print(text, file=sys.stderr)) if debug else None


def _worker_lint(target: str, extras: tuple[str, ...], hash_files: bool) -> ModelResult:
    try:
        return lint_target(target, _worker["resolver"], _worker["debug"], extras, hash_files)
    except Exception as error:
        raise WorkerError(f"{target}: {type(error).__name__}: {error}") from None


def lint_many(
    targets: Sequence[str],
    resolver: SettingsResolver,
    *,
    jobs: int = 1,
    extras: tuple[str, ...] = (),
    debug: Callable[[str], None] | None = None,
    on_result: Callable[[ModelResult], None] | None = None,
    hash_files: bool = True,
) -> list[ModelResult]:
    """Lint ``targets``, in ``jobs`` worker processes when > 1 (0: one per CPU).

    Results come back in the order of ``targets`` whatever order workers finish in;
    ``on_result`` is called as each one arrives (progress display).
    """
    targets = list(targets)
    if len(targets) > 1:
        reuse_freed_memory()
    jobs = min(jobs or os.cpu_count() or 1, len(targets))
    if jobs <= 1:
        results = []
        for target in targets:
            results.append(lint_target(target, resolver, debug, extras, hash_files))
            if on_result is not None:
                on_result(results[-1])
        return results
    for target in targets:  # configuration errors surface here, in this process
        resolver.resolve(target)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    context = _pool_context(multiprocessing)
    ordered: list[ModelResult | None] = [None] * len(targets)
    pool = ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=context,
        initializer=_worker_init,
        initargs=(resolver.cli_values, resolver.config, debug is not None, list(warnings.filters)),
    )
    try:
        futures = {
            pool.submit(_worker_lint, t, tuple(extras), hash_files): i
            for i, t in enumerate(targets)
        }
        for future in as_completed(futures):
            ordered[futures[future]] = result = future.result()
            if on_result is not None:
                on_result(result)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return [result for result in ordered if result is not None]


def _pool_context(multiprocessing: Any) -> Any:
    """How worker processes start.

    ``fork`` is cheapest (workers inherit the imported engine) but unsafe once another
    thread exists (torch starts some), so it is used only from a single-threaded process
    without torch; otherwise workers fork from a clean forkserver, or spawn where that is
    missing.
    """
    import threading

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1 and "torch" not in sys.modules:
        import bnlint.engine  # noqa: F401  (preloaded, so each worker starts warm)
        from bnlint.loaders import preload

        preload()
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["bnlint.api", "bnlint.engine", "bnlint.loaders"])
        return context
    return multiprocessing.get_context("spawn")


def lint(
    target: Any,
    *,
    config: str | Path | None = None,
    extras: Sequence[str] = (),
    baseline: str | Path | None = None,
    **settings: Any,
) -> Report:
    """Lint a path, a list of paths, an ``onnx.ModelProto`` or an ``nn.Module``.

    ``settings`` use the Settings field names (``select=["BN003"]``, ``phase="training"``,
    ``input_shapes={"x": (1, 3, 224, 224)}``, ``jobs=4`` …). An ``nn.Module`` needs
    ``example_inputs=(tensor, …)``. ``extras`` names report data to compute per model
    (``bnlint.report.extras_for(["html"])`` gives what the HTML report shows).
    ``baseline``: a file written by ``--write-baseline``; findings it holds are marked
    ``baseline_state="unchanged"`` and no longer fail (:meth:`Report.exit_code`), as with
    ``bnlint --baseline`` (``bnlint.report.baseline.BaselineError`` if it is unusable).
    """
    from bnlint.evidence.provenance import Invocation

    invocation = Invocation(kind="api")
    example_inputs = settings.pop("example_inputs", None)
    resolver = SettingsResolver(settings, config)
    if isinstance(target, (str, Path)):
        targets: list[Any] = [target]
    elif isinstance(target, (list, tuple)):
        targets = list(target)
    else:
        report = Report(models=[_lint_object(target, resolver, example_inputs, tuple(extras))])
        return finish_report(report, resolver, invocation, baseline)
    paths = list(iter_targets(targets, resolver))
    jobs = resolver.resolve(paths[0])[0].jobs if paths else 1
    report = Report(models=lint_many(paths, resolver, jobs=jobs, extras=tuple(extras)))
    return finish_report(report, resolver, invocation, baseline)


def finish_report(
    report: Report,
    resolver: SettingsResolver,
    invocation: Any,
    baseline: str | Path | None = None,
) -> Report:
    """What every run adds once its models are linted, for the CLI and ``lint()`` alike:
    the rules that ran (for the reporters' documentation), the provenance record, then the
    baseline's verdict on each finding."""
    from bnlint.evidence.provenance import collect

    if report.rules is None:
        rules: dict[str, Any] = {}
        for path in [model.path for model in report.models] or [Path.cwd()]:
            rules.update(resolver.resolve(path)[1].rules)
        report.rules = rules

    if report.provenance is None:
        report.provenance = collect(report, resolver, invocation)
    if baseline is not None:
        from bnlint.report.baseline import apply_baseline, load_baseline

        apply_baseline(report, load_baseline(baseline), str(baseline))
    return report


def _lint_object(
    model: Any, resolver: SettingsResolver, example_inputs: Any, extras: tuple[str, ...] = ()
) -> ModelResult:
    from bnlint.engine import applicable_rules
    from bnlint.evidence.provenance import model_evidence
    from bnlint.loaders import graph_from_object

    settings, ruleset = resolver.resolve(Path.cwd())
    graph = graph_from_object(model, example_inputs, settings)
    result = lint_loaded(graph, settings, ruleset, extras)
    rules_run = [rule.code for rule in applicable_rules(graph, settings, ruleset, result.phase)[0]]
    result.provenance = model_evidence("", settings, graph, rules_run)
    return result
