"""A pull request's symlinks cannot read the CI machine's files into a report.

Git stores symlinks, so a pull request can ship ``models/x.onnxtxt -> /proc/self/environ``
(or any other file of the runner) and, with a data setting (``include``) in a planted
``.bnlint.toml``, have the CI gate lint it. Before: the walk followed the link and the
parsers' messages quoted the file — onnx's text parser prints the line it stopped at
("Error context: SECRET_TOKEN=…"), protobuf's text and JSON formats name the unknown field
— so the secret landed in the job log and the report. Now a folder walk does not read a
symlink that leaves the folder (it is named in a note), and a parse error of a text
serialization is reduced to its position, whoever named the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.hostile.runner import assert_behaved, run_attack
from tests.zoo import onnx_zoo

SECRET = "ghp_" + "s3cr3t" * 6
SUFFIXES = ("onnxtxt", "textproto", "prototxt", "json", "onnx", "pt")


def _repository(tmp_path: Path) -> tuple[Path, Path]:
    secret = tmp_path / "runner" / "secret.env"
    secret.parent.mkdir()
    secret.write_text(f"SECRET_TOKEN={SECRET}\nOTHER=1\n")
    repo = tmp_path / "repo"
    onnx_zoo.opset14_training_mode(repo / "models")
    for suffix in SUFFIXES:
        (repo / "models" / f"leak.{suffix}").symlink_to(secret)  # absolute, as git can hold
    (repo / "models" / "inside.onnx").symlink_to("opset14_training_mode.onnx")
    (repo / ".bnlint.toml").write_text(f"include = {json.dumps([f'*.{s}' for s in SUFFIXES])}\n")
    return repo, secret


def test_a_walk_does_not_follow_symlinks_out_of_the_folder(tmp_path: Path) -> None:
    repo, _ = _repository(tmp_path)
    attack = run_attack([repo, "--format", "json"], tmp_path, expected_seconds=10)
    assert_behaved(attack, exit_code=1, stderr_lines=1)
    assert SECRET not in attack.stdout + attack.stderr
    assert "SECRET_TOKEN" not in attack.stdout + attack.stderr
    shown = "models/leak.json, models/leak.onnx, models/leak.onnxtxt, models/leak.prototxt"
    assert f"not linted: {shown}, models/leak.pt and 1 more" in attack.lines[0]
    linted = sorted(Path(m["path"]).name for m in json.loads(attack.stdout)["models"])
    assert linted == ["inside.onnx", "opset14_training_mode.onnx"]  # a link inside is a file


def test_parse_errors_never_quote_the_file(tmp_path: Path) -> None:
    repo, _ = _repository(tmp_path)
    for suffix, where in (("onnxtxt", "line 1, column 14"), ("textproto", "line 1, column 1")):
        named = repo / "models" / f"leak.{suffix}"
        attack = run_attack([named], tmp_path)
        assert_behaved(
            attack, exit_code=2, error=f"not a valid ONNX text model: parse error at {where}"
        )
        assert "SECRET" not in attack.stderr
