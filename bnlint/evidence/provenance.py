"""Provenance: what a reviewer needs to reproduce a report and to trust it as evidence.

Every report carries one ``provenance`` object (JSON ``provenance``, SARIF invocations and
artifacts, an HTML "how to reproduce" block, a Markdown details block):

* per model: the file's sha256 and size, the configuration file that applied, the
  phase/batch/dtype context the rules saw, the rules that ran, and the libraries imported
  by the process that linted it (a worker under ``-j N``);
* per configuration: the resolved settings in the configuration file's own spelling (a
  reviewer can save them as ``bnlint.toml``), where each value came from, and every
  enabled rule with its severity and options;
* the run: bnlint, Python and library versions, the UTC start and end, the exact command
  line and working directory, and whether verification ran with which tolerances.

The model evidence is computed where the model is linted (:func:`model_evidence`, called by
:func:`bnlint.api.lint_target`), so each file is hashed once, in the worker, reading
fixed-size chunks: hashing never holds more than :data:`bnlint.evidence.digests.CHUNK_BYTES`
of a model in memory.
Library versions come from the imported module or from package metadata: nothing is
imported just to learn its version.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import stat
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from typing import TYPE_CHECKING, Any

from bnlint._version import __version__
from bnlint.evidence.digests import file_digest
from bnlint.evidence.settings_record import configuration_record
from bnlint.findings import json_safe

if TYPE_CHECKING:
    from bnlint.config import Settings
    from bnlint.findings import ModelResult, Report
    from bnlint.graph import ModelGraph

# import name -> distribution name: the libraries that decide what bnlint reads and computes
TRACKED = {
    "onnx": "onnx",
    "onnxruntime": "onnxruntime",
    "torch": "torch",
    "numpy": "numpy",
    "networkx": "networkx",
    "safetensors": "safetensors",
    "google.protobuf": "protobuf",
}
# Non-secret variables that identify a CI run (commit, pipeline); recorded when set.
CI_VARIABLES = (
    "CI",
    "GITHUB_REPOSITORY",
    "GITHUB_SHA",
    "GITHUB_REF",
    "GITHUB_RUN_ID",
    "GITHUB_RUN_ATTEMPT",
    "GITHUB_WORKFLOW",
    "CI_PROJECT_PATH",
    "CI_COMMIT_SHA",
    "CI_COMMIT_REF_NAME",
    "CI_PIPELINE_ID",
    "CI_JOB_ID",
    "BUILD_URL",
)


def utc_now() -> str:
    """The current time as UTC ISO 8601 with a ``Z`` suffix, to the millisecond."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _working_directory() -> str:
    try:
        return os.getcwd()
    except OSError:  # the folder was deleted under us
        return ""


@dataclass
class Invocation:
    """How a run was started: ``cli`` with its arguments, or the Python ``api``."""

    kind: str = "api"
    argv: list[str] | None = None
    started: str = field(default_factory=utc_now)
    working_directory: str = field(default_factory=_working_directory)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "argv": list(self.argv) if self.argv is not None else None,
            "command_line": shlex.join(self.argv) if self.argv is not None else None,
            "working_directory": self.working_directory,
        }


# -- libraries ---------------------------------------------------------------------------
@cache
def installed_version(distribution: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def _module_version(name: str) -> str | None:
    module = sys.modules.get(name)
    found = getattr(module, "__version__", None) if module is not None else None
    return str(found) if found else installed_version(TRACKED[name])


def imported_libraries() -> dict[str, str | None]:
    """The tracked libraries this process has imported, by distribution name, with versions."""
    return {
        distribution: _module_version(name)
        for name, distribution in TRACKED.items()
        if name in sys.modules
    }


def environment(imported: Mapping[str, str | None]) -> dict[str, Any]:
    """Python, platform and tracked libraries (installed version; imported by the run or not)."""
    packages = {}
    for distribution in TRACKED.values():
        used = distribution in imported
        packages[distribution] = {
            "version": imported[distribution] if used else installed_version(distribution),
            "imported": used,
        }
    result: dict[str, Any] = {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": packages,
    }
    ci = {name: os.environ[name] for name in CI_VARIABLES if os.environ.get(name)}
    if ci:
        result["ci"] = ci
    return result


# -- per model (in the worker) -------------------------------------------------------------
def model_context(graph: ModelGraph, settings: Settings) -> dict[str, Any]:
    """What the rules knew about the model: phase and where it came from, inputs, batches."""
    from bnlint.engine import effective_phase

    facts = graph.facts
    phase_origin = settings.origins.get("phase", "default") if settings.phase else "model"
    return json_safe(
        {
            "phase": effective_phase(graph, settings),
            "phase_origin": phase_origin,
            "mode": facts.mode,
            "opset": facts.opset,
            "producer": facts.producer,
            "inputs": [
                {"name": name, "shape": graph.shape(name), "dtype": graph.dtype(name)}
                for name in graph.graph_inputs
            ],
            "batch_sizes": {
                name: {"value": batch.value, "source": batch.source}
                for name, batch in facts.batch_sizes.items()
            },
            "train_batch_size": settings.train_batch_size,
            "input_shapes": {name: list(dims) for name, dims in settings.input_shapes.items()},
            "target_dtype": settings.target_dtype,
        }
    )


def _size(path: str) -> int | None:
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def model_evidence(
    target: str,
    settings: Settings,
    graph: ModelGraph | None = None,
    rules_run: Sequence[str] | None = None,
    *,
    read: bool = True,
) -> dict[str, Any]:
    """Evidence about one input, computed where it is linted (a worker under ``-j N``).

    ``read=False`` for an input bnlint refused: its size is recorded but it is not hashed,
    since refusing (a sparse 2 GiB file, say) must not cost a read of the whole file.
    """
    buffer = graph.source.file_buffer if graph is not None else None
    if read and buffer is not None:  # the loader already mapped the file: hash that, no re-read
        digest = {"sha256": hashlib.sha256(buffer).hexdigest(), "size": len(buffer)}
    else:
        digest = file_digest(target) if read else None
    evidence: dict[str, Any] = {
        "sha256": digest["sha256"] if digest else None,
        "size": digest["size"] if digest else _size(target),
        "configuration_file": settings.config_path,
    }
    if graph is not None:
        evidence["context"] = model_context(graph, settings)
    if rules_run is not None:  # rules that run the model are scheduled only with --verify
        evidence["rules_run"] = list(rules_run)
    evidence["libraries"] = imported_libraries()
    return evidence


# -- the report ----------------------------------------------------------------------------
def collect(report: Report, resolver: Any, invocation: Invocation) -> dict[str, Any]:
    """The provenance object of ``report`` (models linted with ``resolver``'s settings)."""
    configurations: list[dict[str, Any]] = []
    index_of: dict[str | None, int] = {}
    all_settings: list[Settings] = []
    models = []
    imported = dict(imported_libraries())
    dynamic: set[str] = set()  # codes of the rules that run the model
    for model in report.models:
        settings, ruleset = resolver.resolve(model.path)
        dynamic.update(rule.code for rule in ruleset if "runtime" in rule.spec.needs)
        if settings.config_path not in index_of:
            index_of[settings.config_path] = len(configurations)
            configurations.append(configuration_record(settings, ruleset))
            all_settings.append(settings)
        models.append(_model_entry(model, settings, index_of[settings.config_path]))
        imported.update(model.provenance.get("libraries") or {})
    if not report.models:  # an empty folder: still say which configuration applied
        settings, ruleset = resolver.resolve(invocation.working_directory)
        configurations.append(configuration_record(settings, ruleset))
        all_settings.append(settings)
    record = {
        "bnlint_version": __version__,
        "started": invocation.started,
        "finished": utc_now(),
        "invocation": invocation.to_dict(),
        "environment": environment(imported),
        "configurations": configurations,
        "models": models,
        "verification": _verification(report, models, all_settings, imported, dynamic),
    }
    samples = sorted({s.sample_data for s in all_settings if s.sample_data})
    if samples:  # --sample-data: the served inputs BN021 compared the models with
        from bnlint.drift.provenance import sample_record

        record["sample_data"] = sample_record(samples[0])
    return record


def _model_entry(model: ModelResult, settings: Settings, configuration: int) -> dict[str, Any]:
    evidence = dict(model.provenance)
    if not evidence:  # a report built outside lint_target (e.g. verify --against)
        evidence = model_evidence(model.path, settings, read=model.status == "ok")
    evidence.pop("configuration_file", None)
    return {
        "path": model.path,
        "format": model.format,
        "status": model.status,
        "configuration": configuration,
        **evidence,
    }


def _verification(
    report: Report,
    models: list[dict[str, Any]],
    all_settings: list[Settings],
    imported: Mapping[str, str | None],
    dynamic: set[str],
) -> dict[str, Any]:
    requested = any(settings.verify for settings in all_settings)
    ran = sorted(
        {code for entry in models for code in entry.get("rules_run", ()) if code in dynamic}
    )
    reduced = sorted(
        {m.path for m in report.models for finding in m.findings if finding.code == "BN905"}
    )
    return {
        "requested": requested,
        "rules_run": ran if requested else [],
        "reduced_level": reduced,
        "runtimes": {name: imported.get(name) for name in ("onnxruntime", "torch")},
    }
