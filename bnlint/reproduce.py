"""Rerun the check a JSON report records, with the settings it records, and compare.

    python -m bnlint.reproduce report.json              rerun every model, compare findings
    python -m bnlint.reproduce report.json --root DIR   model paths are relative to DIR
    python -m bnlint.reproduce report.json --print-config   the recorded configuration as TOML

For each model of the report: the file's sha256 is checked against the recorded one, the
recorded configuration is written to a temporary ``bnlint.toml`` and passed as ``--config``
(so no configuration file on this machine takes part), the recorded ``--verify`` and
``--trust-model-code`` flags are applied, and the findings are compared with the report's,
field by field. Exit 0 when every model gives identical findings from an identical file,
1 when anything differs, 2 when the report cannot be rerun (no provenance, a missing file).
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import json
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bnlint.config import ConfigError
from bnlint.registry import RegistryError
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
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ReproduceError(f"{path}: not a readable JSON report: {error}") from None
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


def _resolve(recorded: str, root: Path | None, working_directory: str) -> Path:
    path = Path(recorded)
    candidates = [path] if path.is_absolute() else []
    if not path.is_absolute():
        candidates += [root / path] if root is not None else [path]
        candidates.append(Path(working_directory) / path)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise ReproduceError(f"{recorded}: model file not found (use --root DIR)")


def reproduce(report: Mapping[str, Any], root: str | Path | None = None) -> list[Comparison]:
    """Rerun every model of ``report`` with its recorded settings and compare."""
    from bnlint.api import lint
    from bnlint.provenance import file_digest

    provenance = report["provenance"]
    working_directory = (provenance.get("invocation") or {}).get("working_directory") or "."
    folder = Path(root) if root is not None else None
    if len(report.get("models") or []) != len(provenance.get("models") or []):
        raise ReproduceError("the report's models and its provenance's models do not match")
    results = []
    for model, entry in zip(report["models"], provenance["models"], strict=True):
        if entry.get("sha256") is None and model.get("status") == "ok":
            raise ReproduceError(f"{entry['path']}: not a file; rerun it with the recorded command")
        path = _resolve(entry["path"], folder, working_directory)
        digest = file_digest(path) if entry.get("sha256") else None  # refused files: not read
        comparison = Comparison(entry["path"], entry["sha256"], digest and digest["sha256"])
        settings, flags = rerun_settings(provenance, entry, path)
        with tempfile.TemporaryDirectory(prefix="bnlint-reproduce-") as scratch:
            config = Path(scratch) / "bnlint.toml"
            config.write_text(toml_text(settings, RERUN_COMMENT), encoding="utf-8")
            rerun = lint(
                str(path),
                config=config,
                verify=flags.get("verify", False),
                trust_model_code=flags.get("trust-model-code", False),
            )
        (result,) = rerun.models
        if result.status != model["status"]:
            comparison.differences.append(f"status {model['status']} recorded, {result.status} now")
        found = [finding.to_dict() for finding in result.findings]
        comparison.findings = len(found)
        comparison.differences += _differences(model["findings"], found)
        results.append(comparison)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bnlint.reproduce",
        description="Rerun the check a bnlint JSON report records and compare the findings.",
    )
    parser.add_argument("report", help="a report written by `bnlint --format json`")
    parser.add_argument("--root", help="folder the report's relative model paths start from")
    parser.add_argument(
        "--print-config", action="store_true", help="print each recorded configuration as TOML"
    )
    args = parser.parse_args(argv)
    try:
        report = load_report(args.report)
        if args.print_config:
            for position, record in enumerate(report["provenance"]["configurations"]):
                print(f"# configuration {position + 1}: {record.get('path') or 'none'}")
                print(toml_text(record["settings"], RERUN_COMMENT))
            return 0
        comparisons = reproduce(report, args.root)
    except (ReproduceError, TomlError, ConfigError, RegistryError) as error:
        print(f"bnlint: error: {error}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, IndexError, AttributeError) as error:
        print(f"bnlint: error: {args.report}: malformed provenance ({error!r})", file=sys.stderr)
        return 2
    for item in comparisons:
        mark = "same" if item.identical else "DIFFERENT"
        file_note = "same file" if item.same_file else f"file differs (sha256 {item.sha256})"
        print(f"{mark}: {item.path}: {file_note}; {item.findings} finding(s)")
        for difference in item.differences:
            print(f"  {difference}")
    return 0 if all(item.identical for item in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
