"""A linted model is freed as soon as its result exists, without waiting for the cyclic GC.

Linting a folder runs model after model in one process, and the engine pauses the cyclic
collector while it works; a graph that refers to itself (a closure stored on the graph or
its parameter store) would survive until a full collection, keeping its parsed protobuf
and mapped weights resident: memory would grow with every model of the folder.
"""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from bnlint.api import SettingsResolver, lint_loaded
from bnlint.loaders import load_model
from bnlint.report import extras_for
from tests.zoo.onnx_zoo import ZOO


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _assert_freed_after_lint(path: str, cli_values: dict) -> None:
    """Lint ``path`` with every report's extras; the graph must die with its last name."""
    settings, ruleset = SettingsResolver(cli_values, None).resolve(path)
    graph = load_model(path, settings)
    graph_alive, params_alive = weakref.ref(graph), weakref.ref(graph.params)
    result = lint_loaded(graph, settings, ruleset, extras_for(["html", "markdown", "json"]))
    assert result.status == "ok"
    del graph
    assert graph_alive() is None, "the graph is kept alive by a reference cycle"
    assert params_alive() is None, "the parameter store is kept alive by a reference cycle"


@pytest.mark.parametrize("name", sorted(ZOO))
def test_a_linted_onnx_model_is_freed_by_reference_counting(
    name: str, tmp_path: Path, collector_off: None
) -> None:
    _assert_freed_after_lint(str(ZOO[name](tmp_path)), {"verify": True})


@pytest.mark.parametrize("fmt", ["pt2", "script", "state_dict", "safetensors"])
def test_a_linted_pytorch_file_is_freed_by_reference_counting(
    fmt: str, tmp_path: Path, collector_off: None
) -> None:
    pytest.importorskip("torch")
    from tests.torch_formats import save_all
    from tests.zoo import torch_models

    model = torch_models.build("resnet_small")
    example = (torch_models.example_input("resnet_small"),)
    _assert_freed_after_lint(str(save_all(model, example, tmp_path, formats=(fmt,))[fmt]), {})


def test_the_c_library_accepts_the_fixed_mmap_threshold() -> None:
    """On glibc (CI, most Linux) mallopt exists and accepts it; elsewhere it is a no-op."""
    import platform

    from bnlint._perf import reuse_freed_memory

    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert reuse_freed_memory() is expected


@pytest.mark.parametrize(("count", "calls"), [(1, 0), (3, 1)])
def test_only_a_run_of_several_models_changes_the_allocator(
    count: int, calls: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bnlint.api

    seen: list[None] = []
    monkeypatch.setattr(bnlint.api, "reuse_freed_memory", lambda: seen.append(None))
    path = str(ZOO["resnet_opset15"](tmp_path))
    results = bnlint.api.lint_many([path] * count, SettingsResolver({}, None))
    assert [r.status for r in results] == ["ok"] * count
    assert len(seen) == calls
