"""Fuzzing: mutated ONNX models and PyTorch archives never crash, hang or explode bnlint.

Seeds are valid files built in code (ONNX from the zoo, ``.pt2``, TorchScript, ``torch.save``
zips, safetensors); :mod:`tests.fuzz_mutations` edits their bytes, their protobuf
structure (dims, arities, dangling names, cycles, absurd attributes, external data), their
zip members and the JSON inside; :mod:`tests.fuzz_constructs` builds whole constructs that
third-party inference mishandles (Einsum equations, function call graphs, shape chains);
:func:`tests.fuzz_mutations.pickle_structure` writes pickles of shared and recursive
structures from scratch. The oracle, on every example: the CLI exits 0, 1 or 2;
no traceback, no "internal error" (which would stop the other files), at most one error
line, no memory exhaustion under the address-space limit, no raw escape character in
terminal output, no file written and no read of the decoys outside the model's folder
(an audit hook watches every open); time is guarded by an alarm. Contained failures (a reader error caught by
the loader's catch-all, a rule crash reported as BN902) are logged, or fatal with
``BNLINT_FUZZ_STRICT=1``.

Most examples run in this process through the CLI runner (fast); a handful run the real
executable. ``BNLINT_FUZZ_EXAMPLES`` raises the count (``make fuzz``: 50,000 in all,
randomised; ``BNLINT_FUZZ_SEED`` picks the seed); the default is a derandomised run of
about 240 examples.
"""

from __future__ import annotations

import itertools
import os
import resource
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from bnlint.cli import main
from tests.fuzz_constructs import CONSTRUCTS
from tests.fuzz_mutations import (
    DECOY_HARDLINK,
    DECOY_OUTSIDE,
    DECOY_SYMLINK,
    mutate_bytes,
    mutate_model,
    mutate_zip,
    pickle_structure,
    with_data_pkl,
)
from tests.zoo import onnx_zoo

REPO = Path(__file__).resolve().parents[1]
LONG_RUN = int(os.environ.get("BNLINT_FUZZ_EXAMPLES", "0"))
STRICT = os.environ.get("BNLINT_FUZZ_STRICT") == "1"
FINDINGS_LOG = os.environ.get("BNLINT_FUZZ_LOG")
# Shares of a long run: ONNX bytes, ONNX structure, archives, generated constructs,
# generated pickles.
SHARES = {
    "onnx_bytes": 0.25,
    "onnx_structure": 0.35,
    "archives": 0.15,
    "constructs": 0.15,
    "pickles": 0.1,
}
DEFAULT_EXAMPLES = {
    "onnx_bytes": 60,
    "onnx_structure": 100,
    "archives": 80,
    "constructs": 45,
    "pickles": 40,
}
EXAMPLE_SECONDS = 60  # guard per example (a typical one takes 20-200 ms)
ADDRESS_SPACE_HEADROOM = 4 * 1024**3
FORMATS = ["json", "text", "sarif", "html", "markdown", "junit", "github", "gitlab"]


def _examples(name: str) -> settings:
    count = max(1, int(LONG_RUN * SHARES[name])) if LONG_RUN else DEFAULT_EXAMPLES[name]
    return settings(
        max_examples=count,
        derandomize=not LONG_RUN,
        database=None,  # never writes .hypothesis/ into the working directory
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    )


def _seeded(test):
    return seed(int(os.environ.get("BNLINT_FUZZ_SEED", "0")))(test) if LONG_RUN else test


@contextmanager
def _guards() -> Iterator[None]:
    """An alarm per example and an address-space limit while this test runs."""

    def timeout(signum, frame):
        raise TimeoutError(f"an example ran longer than {EXAMPLE_SECONDS}s")

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as handle:
        used = int(handle.read().split()[0]) * resource.getpagesize()
    limit = used + ADDRESS_SPACE_HEADROOM
    resource.setrlimit(resource.RLIMIT_AS, (min(limit, hard) if hard > 0 else limit, hard))
    previous = signal.signal(signal.SIGALRM, timeout)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


class _FileAudit:
    """A ``sys.addaudithook`` spy, armed only while bnlint runs: every file opened for
    writing (or renamed, removed, created) and every open of a decoy placed outside the
    model's folder is recorded. Bytecode caches written by lazy imports are not bnlint's,
    and libraries open ``/dev/null`` for writing to silence their own output."""

    WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    WRITE_EVENTS = frozenset(
        {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.symlink", "os.link"}
        | {"os.truncate", "os.chmod", "os.chown", "shutil.copyfile", "shutil.move"}
    )

    def __init__(self) -> None:
        self.armed = False
        self.decoys: set[str] = set()
        self.reads: list[str] = []
        self.writes: list[str] = []
        sys.addaudithook(self)

    def __call__(self, event: str, args: tuple) -> None:
        if not self.armed:
            return
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = os.fsdecode(args[0]), args[1] or "", args[2] or 0
            if os.path.realpath(path) in self.decoys:
                self.reads.append(path)
            writing = any(c in mode for c in "wax+") or flags & self.WRITE_FLAGS
            if writing and "__pycache__" not in path and path != os.devnull:
                self.writes.append(path)
        elif event in self.WRITE_EVENTS:
            self.writes.append(f"{event}{args!r}")


AUDIT = _FileAudit()


def check_cli(path: Path, output_format: str) -> None:
    """The oracle, in process: what the user would see from ``bnlint PATH``."""
    signal.setitimer(signal.ITIMER_REAL, EXAMPLE_SECONDS)
    AUDIT.armed = True
    try:
        result = CliRunner().invoke(main, [str(path), "--format", output_format])
    finally:
        AUDIT.armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
    assert not AUDIT.reads, f"read outside the model's folder: {AUDIT.reads}"
    assert not AUDIT.writes, f"wrote while linting: {AUDIT.writes}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code in (0, 1, 2), result.output
    _check_streams(path, result.stdout, result.stderr, output_format)


def _check_streams(path: Path, stdout: str, stderr: str, output_format: str) -> None:
    for bad in ("Traceback", "internal error", "ran out of memory"):
        assert bad not in stderr, stderr
    if output_format in ("text", "github"):
        assert "\x1b" not in stdout and "\x1b" not in stderr
    assert len([line for line in stderr.splitlines() if line.strip()]) <= 1, stderr
    _soft(path, stderr if "reader error" in stderr else "", "reader error")
    crashed = [line for line in stdout.splitlines() if "crashed:" in line]
    _soft(path, crashed[0] if "BN902" in stdout and crashed else "", "BN902")


def _soft(path: Path, text: str, kind: str) -> None:
    """A contained failure: a reader error caught by the loader's catch-all (the file is
    refused with one line) or a rule crash (BN902). Both satisfy the user-facing contract
    but are bugs: ``BNLINT_FUZZ_STRICT=1`` fails on them, ``BNLINT_FUZZ_LOG`` collects them."""
    if not text:
        return
    assert not STRICT, f"{kind}: {text}"
    if FINDINGS_LOG:
        kept = Path(f"{FINDINGS_LOG}.files")
        kept.mkdir(exist_ok=True)
        shutil.copy(path, kept / path.name)  # to reproduce it later
        with open(FINDINGS_LOG, "a", encoding="utf-8") as log:
            log.write(f"{kind}\t{' '.join(text.split())[:400]}\n")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """The mutants' folder, with decoys that external-data mutations point at: a file
    outside it, a symlink to that file and a hard link to it (all must be refused)."""
    folder = tmp_path_factory.mktemp("fuzz")
    secret = folder.parent / DECOY_OUTSIDE
    secret.write_bytes(bytes(range(256)) * 64)
    (folder / DECOY_SYMLINK).symlink_to(secret)
    os.link(secret, folder / DECOY_HARDLINK)
    AUDIT.decoys = {os.path.realpath(secret)}
    return folder


def test_the_file_audit_sees_escapes_and_writes(workdir: Path) -> None:
    """Control: the audit oracle would catch a read through a decoy and any write."""
    AUDIT.armed = True
    try:
        (workdir / DECOY_SYMLINK).read_bytes()
        (workdir / "written.txt").write_text("x")
    finally:
        AUDIT.armed = False
    reads, writes = list(AUDIT.reads), list(AUDIT.writes)
    AUDIT.reads.clear()
    AUDIT.writes.clear()
    (workdir / "written.txt").unlink()
    assert reads == [str(workdir / DECOY_SYMLINK)]
    assert writes == [str(workdir / "written.txt")]


@pytest.fixture(scope="module")
def onnx_seeds(workdir: Path) -> dict[str, onnx.ModelProto]:
    builders = [
        onnx_zoo.resnet_opset15,
        onnx_zoo.opset9_training,
        onnx_zoo.constant_node_params,
        onnx_zoo.dynamo_zero_bias,
        onnx_zoo.if_branches,
        onnx_zoo.loop_body,
        onnx_zoo.mlp_gemm_bn,
    ]
    seeds = {b.__name__: onnx.load(str(b(workdir / "seeds"))) for b in builders}
    external = onnx_zoo.external_data(workdir)  # its data file stays beside the mutants
    seeds["external_data"] = onnx.load(str(external), load_external_data=False)
    return seeds


@pytest.fixture(scope="module")
def archive_seeds(workdir: Path) -> dict[str, bytes]:
    import torch
    from torch import nn

    from tests import torch_formats

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    example = (torch.randn(1, 3, 8, 8),)
    folder = workdir / "archives"
    folder.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paths = {
            "pt2": torch_formats.save_pt2(model, example, folder / "m.pt2"),
            "script": torch_formats.save_script(model, folder / "m.script.pt"),
            "trace": torch_formats.save_trace(model, example, folder / "m.trace.pt"),
            "state": torch_formats.save_state_dict(model, folder / "m.state.pt"),
            "safetensors": torch_formats.save_safetensors(model, folder / "m.safetensors"),
        }
        torch.save(model.state_dict(), folder / "legacy.pt", _use_new_zipfile_serialization=False)
    paths["legacy"] = folder / "legacy.pt"
    return {name: path.read_bytes() for name, path in paths.items()}


_counter = itertools.count()


def _write(workdir: Path, data: bytes, suffix: str) -> Path:
    path = workdir / f"mutant{next(_counter)}{suffix}"
    path.write_bytes(data)
    return path


@_examples("onnx_bytes")
@_seeded
@given(data=st.data())
def test_mutated_onnx_bytes(data, onnx_seeds, workdir: Path) -> None:
    name = data.draw(st.sampled_from(sorted(onnx_seeds)), label="seed")
    blob = mutate_bytes(data, onnx_seeds[name].SerializeToString())
    path = _write(workdir, blob, ".onnx")
    with _guards():
        check_cli(path, data.draw(st.sampled_from(FORMATS), label="format"))
    path.unlink()


@_examples("onnx_structure")
@_seeded
@given(data=st.data())
def test_mutated_onnx_structure(data, onnx_seeds, workdir: Path) -> None:
    name = data.draw(st.sampled_from(sorted(onnx_seeds)), label="seed")
    model = onnx.ModelProto()
    model.CopyFrom(onnx_seeds[name])
    mutate_model(data, model)
    try:
        blob = model.SerializeToString()
    except Exception:  # protobuf refuses to encode it (e.g. nesting too deep): not a file
        return
    path = _write(workdir, blob, ".onnx")
    with _guards():
        check_cli(path, data.draw(st.sampled_from(FORMATS), label="format"))
    path.unlink()


@_examples("archives")
@_seeded
@given(data=st.data())
def test_mutated_torch_archives(data, archive_seeds, workdir: Path) -> None:
    name = data.draw(st.sampled_from(sorted(archive_seeds)), label="seed")
    blob = archive_seeds[name]
    zipped = blob[:4] == b"PK\x03\x04"
    blob = mutate_zip(data, blob) if zipped else mutate_bytes(data, blob)
    suffix = ".safetensors" if name == "safetensors" else ".pt2" if name == "pt2" else ".pt"
    path = _write(workdir, blob, suffix)
    with _guards():
        check_cli(path, data.draw(st.sampled_from(["json", "text", "html"]), label="format"))
    path.unlink()


@_examples("constructs")
@_seeded
@given(data=st.data())
def test_generated_constructs(data, workdir: Path) -> None:
    """Einsum equations near the grammar, model-local function call graphs (recursion
    included) and shape-operator chains from huge declared or constant sizes
    (:mod:`tests.fuzz_constructs`): never a hang, an explosion or a second error line."""
    kind = data.draw(st.sampled_from(sorted(CONSTRUCTS)), label="construct")
    path = _write(workdir, CONSTRUCTS[kind](data).SerializeToString(), ".onnx")
    with _guards():
        check_cli(path, data.draw(st.sampled_from(["json", "text"]), label="format"))
    path.unlink()


@_examples("pickles")
@_seeded
@given(data=st.data())
def test_shared_pickle_structures(data, archive_seeds, workdir: Path) -> None:
    """Pickles of shared and recursive structures (a tuple reachable by 2**n paths as a
    dict key, a list shared at every level, runs of EMPTY_SET, deep MARKs, calls of any
    global): the restricted unpickler returns or refuses within the guards, and so does
    the CLI on a TorchScript or torch.save archive holding the pickle as its data.pkl."""
    import pickle

    from bnlint.loaders.safe_pickle import RestrictedUnpickler
    from bnlint.loaders.torch_pickle import interpret

    payload = pickle_structure(data)
    with _guards():
        signal.setitimer(signal.ITIMER_REAL, EXAMPLE_SECONDS)
        try:
            interpret(RestrictedUnpickler(payload).load())
        except (pickle.UnpicklingError, EOFError, ValueError):
            pass  # refused: what the loaders turn into one error line
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    seed = data.draw(st.sampled_from(["script", "state"]), label="seed")
    path = _write(workdir, with_data_pkl(archive_seeds[seed], payload), ".pt")
    with _guards():
        check_cli(path, data.draw(st.sampled_from(["json", "text"]), label="format"))
    path.unlink()


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (6 * 1024**3, 6 * 1024**3))


@settings(max_examples=2, derandomize=True, database=None, deadline=None)
@given(data=st.data())
def test_mutants_through_the_real_executable(data, onnx_seeds, archive_seeds, workdir) -> None:
    """A few mutants of each family through ``python -m bnlint``, under RLIMIT_AS."""
    model = onnx.ModelProto()
    model.CopyFrom(onnx_seeds[data.draw(st.sampled_from(sorted(onnx_seeds)))])
    mutate_model(data, model)
    onnx_bytes = mutate_bytes(data, onnx_seeds["resnet_opset15"].SerializeToString())
    archive = mutate_zip(data, archive_seeds[data.draw(st.sampled_from(["pt2", "script"]))])
    paths = [
        _write(workdir, model.SerializeToString(), ".onnx"),
        _write(workdir, onnx_bytes, ".onnx"),
        _write(workdir, archive, ".pt2"),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "bnlint", *map(str, paths), "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,  # ten times a generous expected 10 s
        preexec_fn=_limit_address_space,
        check=False,
    )
    assert result.returncode in (0, 1, 2), result.stderr
    for bad in ("Traceback", "internal error", "ran out of memory"):
        assert bad not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) <= len(paths) and all(line.startswith("bnlint: error: ") for line in lines)
