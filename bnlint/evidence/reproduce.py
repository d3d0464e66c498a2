"""Rerun the check a JSON report records, with the settings it records, and compare.

    python -m bnlint.reproduce report.json            rerun every model, compare
    python -m bnlint.reproduce report.json --root D   model paths are relative to D
    python -m bnlint.reproduce report.json --print-config   the recorded configuration

A report is data (docs/security.md). For each model of the report: the file is looked up
inside ``--root`` (default: the current folder; a recorded path that leads elsewhere is
not opened), its sha256 is checked against the recorded one and a file that differs is not
linted unless ``--run-changed`` is given; the recorded configuration, minus every setting
that imports code, widens reads or loosens a limit (:mod:`bnlint.evidence.reproduce_trust`, each
one named in a note with the option that sets it on purpose), is written to a temporary
``bnlint.toml`` and passed as ``--config`` (so no configuration file on this machine takes
part), the recorded ``--verify`` switch is applied, and the findings are compared with the
report's, field by field. Exit 0 when every model gives identical findings from an
identical file, 1 when anything differs, 2 when the report cannot be rerun (no provenance,
a missing file).
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bnlint.config import ConfigError
from bnlint.engine.registry import RegistryError
from bnlint.evidence.reproduce_trust import OwnTrust, untrusted_settings
from bnlint.json_data import JsonDataError, load_json
from bnlint.report.sanitize import guard_terminal, printable
from bnlint.toml_writer import TomlError, toml_text

RERUN_COMMENT = "the configuration recorded in a bnlint report's provenance"


class ReproduceError(Exception):
    """The report cannot be rerun (no provenance, unreadable, a model file missing)."""


# -- rerun -------------------------------------------------------------------------------
@dataclass
class Comparison:
    """The outcome for one model: same file?, same findings?, and what differs."""

    path: str
    recorded_sha256: str | None
    sha256: str | None
    findings: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def same_file(self) -> bool:
        return self.recorded_sha256 is None or self.recorded_sha256 == self.sha256

    @property
    def identical(self) -> bool:
        return self.same_file and not self.differences


def load_report(path: str | Path) -> dict[str, Any]:
    try:
        data = load_json(Path(path).read_bytes())
    except (OSError, JsonDataError) as error:
        problem = getattr(error, "strerror", None) or error
        raise ReproduceError(f"{path}: not a readable JSON report: {problem}") from None
    if not isinstance(data, dict) or not isinstance(data.get("provenance"), dict):
        raise ReproduceError(f"{path}: the report has no provenance (bnlint >= 0.1, schema 1.1)")
    return data


def _original_absolute(recorded: str, working_directory: str) -> str:
    path = Path(recorded)
    return str(path if path.is_absolute() else Path(working_directory) / path)


def rerun_settings(
    provenance: Mapping[str, Any], entry: Mapping[str, Any], model_path: Path
) -> tuple[dict[str, Any], dict[str, bool]]:
    """The recorded configuration for one model, made independent of where it lived.

    ``per-model-ignores`` globs were resolved against the original machine's paths: each
    pattern that matched this model there becomes this file's own path here.
    """
    record = provenance["configurations"][entry.get("configuration", 0)]
    settings = dict(record["settings"])
    flags = {key: bool(value) for key, value in (record.get("flags") or {}).items()}
    ignores = settings.get("per-model-ignores") or {}
    if ignores:
        working_directory = (provenance.get("invocation") or {}).get("working_directory") or "."
        original = _original_absolute(entry["path"], working_directory)
        name = Path(entry["path"]).name
        codes = [
            code
            for pattern, listed in ignores.items()
            if fnmatch.fnmatch(original, pattern) or fnmatch.fnmatch(name, pattern)
            for code in listed
        ]
        here = glob.escape(str(model_path.absolute()))
        settings["per-model-ignores"] = {here: codes} if codes else {}
    return settings, flags


def _comparable(finding: Mapping[str, Any]) -> dict[str, Any]:
    data = {key: value for key, value in finding.items() if key != "baseline_state"}
    location = dict(data.get("location") or {})
    location.pop("file", None)  # the path may differ (--root); the file's hash is compared
    data["location"] = location
    return data


def _keyed(findings: list[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Findings by (code, node, occurrence), the identity baselines use too."""
    keyed: dict[tuple[str, str, int], dict[str, Any]] = {}
    seen: dict[tuple[str, str], int] = {}
    for finding in findings:
        where = finding.get("scope") or finding.get("node") or "model"
        occurrence = seen.get((finding["code"], where), 0)
        seen[(finding["code"], where)] = occurrence + 1
        keyed[(finding["code"], where, occurrence)] = _comparable(finding)
    return keyed


def _differences(recorded: list[dict[str, Any]], found: list[dict[str, Any]]) -> list[str]:
    before, after = _keyed(recorded), _keyed(found)
    differences = [
        f"{code} at {where}: recorded, not found now"
        for code, where, _ in before.keys() - after.keys()
    ]
    differences += [
        f"{code} at {where}: found now, not recorded"
        for code, where, _ in after.keys() - before.keys()
    ]
    for key in before.keys() & after.keys():
        fields = sorted(
            k for k in set(before[key]) | set(after[key]) if before[key].get(k) != after[key].get(k)
        )
        if fields:
            differences.append(f"{key[0]} at {key[1]}: {', '.join(fields)} differ")
    if not differences and list(before) != list(after):
        differences.append("the same findings in another order")
    return sorted(differences)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):
        return False
    return True


def _resolve(recorded: str, root: Path, working_directory: str) -> Path:
    """The recorded model path, found inside ``root`` (relative to it, or to the recorded
    working directory when that lies inside it). Nothing outside ``root`` is opened: a
    report cannot make bnlint read ``/etc/passwd`` or a device."""
    path = Path(recorded)
    candidates = [path] if path.is_absolute() else [root / path]
    if not path.is_absolute():
        candidates.append(Path(working_directory) / path)
    outside = False
    for candidate in candidates:
        if not _inside(candidate, root):
            outside = outside or os.path.lexists(candidate)
            continue
        if candidate.exists():
            return candidate
    if outside:
        raise ReproduceError(f"{recorded}: outside --root {root}; not read (pass --root DIR)")
    raise ReproduceError(f"{recorded}: model file not found (use --root DIR)")


def _known_rule(plugins: bool = True):
    from bnlint.engine.registry import load_rules

    ruleset = load_rules((), plugins=plugins)
    return lambda selector: (
        any(ruleset.specificity(selector, rule) is not None for rule in ruleset)
        or (ruleset.get(selector) is not None)
    )


def reproduce(
    report: Mapping[str, Any],
    root: str | Path | None = None,
    own: OwnTrust | None = None,
    *,
    run_changed: bool = False,
    notes: list[str] | None = None,
) -> list[Comparison]:
    """Rerun every model of ``report`` with its recorded (untrusted) settings and compare.

    ``own`` is what the caller allows on purpose; ``notes`` collects what was ignored.
    """
    from bnlint.api import lint
    from bnlint.evidence.digests import file_digest

    own = own or OwnTrust()
    notes = notes if notes is not None else []
    provenance = report["provenance"]
    working_directory = (provenance.get("invocation") or {}).get("working_directory") or "."
    folder = Path(root) if root is not None else Path.cwd()
    if len(report.get("models") or []) != len(provenance.get("models") or []):
        raise ReproduceError("the report's models and its provenance's models do not match")
    known_rule = _known_rule()
    noted: set[int] = set()
    results = []
    for model, entry in zip(report["models"], provenance["models"], strict=True):
        if entry.get("sha256") is None and model.get("status") == "ok":
            raise ReproduceError(f"{entry['path']}: not a file; rerun it with the recorded command")
        path = _resolve(str(entry["path"]), folder, str(working_directory))
        digest = file_digest(path) if entry.get("sha256") else None  # refused files: not read
        comparison = Comparison(entry["path"], entry["sha256"], digest and digest["sha256"])
        results.append(comparison)
        if not comparison.same_file and not run_changed:
            comparison.differences.append("not linted: the file differs (pass --run-changed)")
            continue
        recorded, flags = rerun_settings(provenance, entry, path)
        settings, trust, ignored = untrusted_settings(recorded, flags, own, known_rule)
        configuration = int(entry.get("configuration", 0))
        if configuration not in noted:
            noted.add(configuration)
            notes += [f"configuration {configuration + 1}: {note}" for note in ignored]
        with tempfile.TemporaryDirectory(prefix="bnlint-reproduce-") as scratch:
            config = Path(scratch) / "bnlint.toml"
            config.write_text(toml_text(settings, RERUN_COMMENT), encoding="utf-8")
            rerun = lint(
                str(path),
                config=config,
                verify=bool(flags.get("verify", False)),
                trust_model_code=trust,
            )
        (result,) = rerun.models
        if result.status != model["status"]:
            comparison.differences.append(f"status {model['status']} recorded, {result.status} now")
        found = [finding.to_dict() for finding in result.findings]
        comparison.findings = len(found)
        comparison.differences += _differences(model["findings"], found)
    return results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bnlint.reproduce",
        description="Rerun the check a bnlint JSON report records and compare the findings. "
        "The report is data: settings that import code, widen reads or loosen limits are "
        "ignored (and named) unless given here.",
    )
    parser.add_argument("report", help="a report written by `bnlint --format json`")
    parser.add_argument("--root", help="folder holding the models (default: current folder)")
    parser.add_argument(
        "--print-config", action="store_true", help="print each recorded configuration as TOML"
    )
    parser.add_argument(
        "--run-changed", action="store_true", help="also lint model files whose sha256 differs"
    )
    trust = parser.add_argument_group("trust you give on purpose (never taken from the report)")
    trust.add_argument("--trust-model-code", action="store_true", help="as bnlint's own flag")
    trust.add_argument("--rules-dir", action="append", default=[], metavar="DIR")
    trust.add_argument("--arch", metavar="MODULE:FACTORY")
    trust.add_argument("--allowed-data-root", action="append", default=[], metavar="DIR")
    trust.add_argument("--max-nodes", type=int, metavar="N")
    trust.add_argument("--max-subgraph-depth", type=int, metavar="N")
    return parser


def _own_trust(args: argparse.Namespace) -> OwnTrust:
    limits = {"max-nodes": args.max_nodes, "max-subgraph-depth": args.max_subgraph_depth}
    return OwnTrust(
        trust_model_code=args.trust_model_code,
        rules_dirs=tuple(os.path.abspath(d) for d in args.rules_dir),
        arch=args.arch,
        allowed_data_roots=tuple(os.path.abspath(d) for d in args.allowed_data_root),
        limits={key: value for key, value in limits.items() if value is not None},
    )


def _print_config(report: Mapping[str, Any]) -> None:
    """Each recorded configuration as TOML, what a report may not set commented out."""
    for position, record in enumerate(report["provenance"]["configurations"]):
        print(f"# configuration {position + 1}: {printable(record.get('path') or 'none', None)}")
        settings, _, notes = untrusted_settings(
            record["settings"], record.get("flags") or {}, OwnTrust(), _known_rule()
        )
        for note in notes:
            print(f"# {printable(note, None)}")
        print(toml_text(settings, RERUN_COMMENT))


def main(argv: list[str] | None = None) -> int:
    guard_terminal()
    args = _parser().parse_args(argv)
    report_name = printable(args.report, None)
    notes: list[str] = []
    try:
        report = load_report(args.report)
        if args.print_config:
            _print_config(report)
            return 0
        comparisons = reproduce(
            report, args.root, _own_trust(args), run_changed=args.run_changed, notes=notes
        )
    except (ReproduceError, TomlError, ConfigError, RegistryError) as error:
        print(f"bnlint: error: {printable(error, 1000)}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as error:
        problem = printable(f"{type(error).__name__}: {error}", 300)
        print(f"bnlint: error: {report_name}: malformed provenance ({problem})", file=sys.stderr)
        return 2
    for note in notes:
        print(f"bnlint: note: {printable(note, 1000)}", file=sys.stderr)
    for item in comparisons:
        mark = "same" if item.identical else "DIFFERENT"
        file_note = "same file" if item.same_file else f"file differs (sha256 {item.sha256})"
        path = printable(item.path, None)
        print(f"{mark}: {path}: {file_note}; {item.findings} finding(s)")
        for difference in item.differences:
            print(f"  {printable(difference, 1000)}")
    return 0 if all(item.identical for item in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
