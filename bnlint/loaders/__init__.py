"""Front ends: turn a model file (or a Python entry point) into a :class:`ModelGraph`.

Only this package knows about formats. The format is decided by the file's content
(zip, pickle, safetensors header, protobuf), with the extension as a tie-breaker, so an
ONNX file named ``.pt`` still loads as ONNX.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bnlint.loaders.files import (
    ZIP_MAGIC,
    LoadError,
    check_regular_file,
    is_entry_point,
    read_head,
)

__all__ = [
    "ZIP_MAGIC",
    "LoadError",
    "check_regular_file",
    "graph_from_object",
    "is_entry_point",
    "leaves_folder",
    "load_model",
    "locate_constructor_causes",
    "locate_in_repository",
    "preload",
    "read_head",
    "read_onnx_tensor",
]

if TYPE_CHECKING:
    import numpy as np

    from bnlint.config import Settings
    from bnlint.graph import ModelGraph

ONNX_MAX_BYTES = 2 * 1024**3  # protobuf's hard limit; larger models must use external data


def sniff_format(path: Path, head: bytes) -> str:
    """``onnx``, ``torch-zip``, ``pickle`` or ``safetensors`` from the first bytes."""
    if head.startswith(ZIP_MAGIC):
        return "torch-zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000:
        return "safetensors"
    return "onnx"


LFS_POINTER = b"version https://git-lfs.github.com/spec/"
LFS_POINTER_PREFIX_SIZE = 64
LFS_POINTER_MAX_BYTES = 1024  # a pointer is three short lines (version, oid, size)


def refuse_non_models(path: Path, info: os.stat_result, head: bytes) -> None:
    """Files people pass for a model that are not one, with what to do instead: a Git LFS
    pointer checked out without LFS, a Python file given without its ``:factory``."""
    if head.startswith(LFS_POINTER) and info.st_size <= LFS_POINTER_MAX_BYTES:
        raise LoadError(
            path,
            "Git LFS pointer, not the model: run `git lfs pull`, or check out with LFS "
            "(GitHub Actions: actions/checkout with `lfs: true`)",
        )
    if path.suffix == ".py":
        raise LoadError(path, python_file_problem(path, info))


def python_file_problem(path: Path, info: os.stat_result) -> str:
    """A ``.py`` path without ``:factory``: name the form, and the candidates in the file
    (top-level functions and classes, found with ``ast``; nothing is imported)."""
    import ast

    text = (
        "a Python file is linted through the function or class that builds the model: "
        f"`{path}:FACTORY`"
    )
    candidates: list[str] = []
    if info.st_size <= 1_000_000:
        try:
            tree = ast.parse(path.read_bytes())
            candidates = [
                node.name
                for node in tree.body
                if isinstance(node, (ast.FunctionDef, ast.ClassDef))
                and not node.name.startswith("_")
            ]
        except (SyntaxError, ValueError, OSError, RecursionError):
            candidates = []
    if candidates:
        shown = ", ".join(candidates[:8]) + (", …" if len(candidates) > 8 else "")
        text += f" (defined in it: {shown})"
    return text + "; it runs your code, as pytest does"


def load_model(target: str, settings: Settings) -> ModelGraph:
    """Load any supported input; raises :class:`LoadError` with a one-line problem.

    A file is attacker-controlled data: whatever a reader raises on it (a malformed
    structure no check anticipated, memory exhausted under a limit) is this file's error,
    so the other files on the command line are still linted.
    """
    if is_entry_point(target):
        return _torch_loader().load_entry_point(target, settings)
    path = Path(target)
    info = check_regular_file(path)
    head = read_head(path, info, LFS_POINTER_PREFIX_SIZE)
    refuse_non_models(path, info, head)
    kind = sniff_format(path, head)
    try:
        graph = _load_file(path, kind, info, settings)
        from bnlint.loaders.strings import check_graph_strings

        check_graph_strings(graph)
        return graph
    except LoadError:
        raise
    except MemoryError:
        raise LoadError(path, "ran out of memory while reading it") from None
    except RecursionError:
        raise LoadError(path, "structure nested too deeply to read") from None
    except Exception as error:
        detail = " ".join(str(error).split())[:300]
        raise LoadError(
            path, f"cannot read it: {type(error).__name__}: {detail} (reader error; please report)"
        ) from error


def _load_file(path: Path, kind: str, info: os.stat_result, settings: Settings) -> ModelGraph:
    if kind == "onnx":
        if info.st_size > ONNX_MAX_BYTES:
            raise LoadError(
                path,
                "ONNX file over 2 GiB: protobuf cannot hold it; store weights as external data",
            )
        from bnlint.loaders import onnx as onnx_loader

        return onnx_loader.load(path, settings)
    if kind == "safetensors":
        from bnlint.loaders import safetensors as safetensors_loader

        return safetensors_loader.load(path, settings)
    return _torch_loader().load_file(path, kind, settings)


def _torch_loader():
    try:
        from bnlint.loaders import torch as torch_loader
    except ImportError as error:  # the module itself imports torch lazily; this is a bug guard
        raise LoadError("<torch>", f"PyTorch front end unavailable: {error}") from None
    return torch_loader


def graph_from_object(model: Any, example_inputs: Any, settings: Settings) -> ModelGraph:
    """The graph of an in-memory model: an ``onnx.ModelProto`` or an ``nn.Module``."""
    type_name = f"{type(model).__module__}.{type(model).__qualname__}"
    if type_name == "onnx.onnx_ml_pb2.ModelProto" or type(model).__name__ == "ModelProto":
        from bnlint.loaders.onnx import build_graph

        return build_graph(model, Path("<ModelProto>"), settings)
    return _torch_loader().graph_from_module(model, example_inputs, settings)


def locate_constructor_causes(graph: ModelGraph, findings: list[Any]) -> list[Any]:
    """For a live module (entry point), findings a constructor causes point at the line
    that constructs their layer instead of the ``forward`` call (loaders.torch_definitions)."""
    if graph.source.torch_module is None or not findings:
        return findings
    from bnlint.loaders.torch_definitions import locate_constructor_causes as locate

    return locate(graph.source.torch_module, findings)


def locate_in_repository(findings: list[Any], root: Path) -> list[Any]:
    """For a model file, findings a constructor causes point at the line that constructs
    their layer, read from the recorded Python file inside ``root``, parsed with ``ast``
    and never run (loaders.torch_definitions)."""
    from bnlint.loaders.torch_definitions import locate_in_repository as locate

    return locate(findings, root)


def read_onnx_tensor(tensor: Any) -> np.ndarray:
    """An embedded ONNX ``TensorProto`` as an array, its declared size checked first
    (:class:`~bnlint.params.UnreadableParameter` when it cannot be read)."""
    from bnlint.loaders.onnx_tensors import read_embedded

    return read_embedded(tensor)


def leaves_folder(path: Path, root: Path) -> bool:
    """Whether ``path``, found by walking ``root``, is a symlink to a file outside it
    (:func:`bnlint.loaders.external.leaves_folder`): a folder walk does not read it."""
    from bnlint.loaders.external import leaves_folder as leaves

    return leaves(path, root)


def preload() -> None:
    """Import the ONNX front end now (before worker processes fork, so each starts warm)."""
    import bnlint.loaders.onnx  # noqa: F401
