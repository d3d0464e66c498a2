"""``pkg.module:factory`` and ``path/to/file.py:factory``: build the user's model.

This runs the user's own code by design (as pytest imports test files). The import
happens with ``sys.dont_write_bytecode`` set, so linting leaves no ``__pycache__``
behind. Example inputs come from ``--input-shape`` or from an ``example_inputs``
attribute or function next to the factory (or on the returned model).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from bnlint.loaders.files import LoadError


def _describe(error: BaseException) -> str:
    text = " ".join(str(error).split())[:300]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


_OWN_FRAMES = (str(Path(__file__).resolve().parents[1]), "<frozen importlib")


def user_traceback(error: BaseException) -> str:
    """The traceback of an exception raised by the user's code, without bnlint's and
    importlib's frames (as pytest shows a collection error)."""
    import traceback

    summary = traceback.TracebackException.from_exception(error)
    summary.stack = traceback.StackSummary.from_list(
        [frame for frame in summary.stack if not frame.filename.startswith(_OWN_FRAMES)]
    )
    return "".join(summary.format())


def _user_code_failed(target: str, problem: str, error: BaseException) -> LoadError:
    if isinstance(error, KeyboardInterrupt):
        raise error
    return LoadError(target, f"{problem} {_describe(error)}", user_traceback(error))


@contextmanager
def _importing(folder: Path) -> Iterator[None]:
    """``folder`` first on sys.path and no bytecode written, for the import and the call."""
    saved_flag, added = sys.dont_write_bytecode, str(folder)
    sys.dont_write_bytecode = True
    inserted = added not in sys.path
    if inserted:
        sys.path.insert(0, added)
    try:
        yield
    finally:
        sys.dont_write_bytecode = saved_flag
        if inserted and added in sys.path:
            sys.path.remove(added)


def import_target(target: str) -> tuple[ModuleType, str, Path]:
    """The imported module of ``target``, the factory's name and the import root folder."""
    module_part, _, attribute = target.rpartition(":")
    if module_part.endswith(".py") or os.sep in module_part or "/" in module_part:
        file = Path(module_part).resolve()
        if not file.is_file():
            raise LoadError(target, f"no such Python file: {module_part}")
        name = "bnlint_user_model_" + "".join(c if c.isalnum() else "_" for c in str(file))
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise LoadError(target, f"cannot import {module_part} as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            with _importing(file.parent):
                spec.loader.exec_module(module)
        except BaseException as error:
            sys.modules.pop(name, None)
            raise _user_code_failed(target, f"importing {module_part} failed:", error) from None
        return module, attribute, file.parent
    try:
        with _importing(Path.cwd()):
            module = importlib.import_module(module_part)
    except BaseException as error:
        raise _user_code_failed(target, f"importing {module_part} failed:", error) from None
    return module, attribute, Path.cwd()


def build_from_entry_point(target: str, settings: Any) -> tuple[Any, Any]:
    """The model the factory returns and its example inputs (None when unknown)."""
    import torch

    module, attribute, root = import_target(target)
    factory = getattr(module, attribute, None)
    if factory is None:
        raise LoadError(target, _no_factory(target.rpartition(":")[0], module, attribute))
    if not callable(factory):
        raise LoadError(target, f"{attribute!r} is not a class or a callable returning a model")
    try:
        with _importing(root):  # the factory may import more of the user's code
            model = factory()
    except BaseException as error:
        raise _user_code_failed(target, f"{attribute}() raised", error) from None
    if not isinstance(model, torch.nn.Module):
        raise LoadError(
            target, f"{attribute}() returned {type(model).__name__}, not a torch.nn.Module"
        )
    if getattr(settings, "input_shapes", None):
        return model, None  # graph_from_module builds inputs from --input-shape
    return model, _example_inputs(target, module, model)


def _example_inputs(target: str, module: ModuleType, model: Any) -> Any:
    for owner, name in (
        (module, "example_inputs"),
        (model, "example_inputs"),
        (model, "example_input"),
    ):
        value = getattr(owner, name, None)
        if value is None:
            continue
        try:
            return value() if callable(value) else value
        except BaseException as error:
            raise _user_code_failed(target, f"{name}() raised", error) from None
    return None


def _no_factory(module_part: str, module: ModuleType, attribute: str) -> str:
    """The user's own spelling of the module, and the names it does define."""
    import difflib

    names = [
        name
        for name, value in vars(module).items()
        if callable(value)
        and not name.startswith("_")
        and getattr(value, "__module__", None) == module.__name__
    ]
    text = f"{module_part} defines no {attribute!r}"
    close = difflib.get_close_matches(attribute, names, 1, 0.6)
    if close:
        text += f"; did you mean {close[0]!r}?"
    elif names:
        text += f" (it defines: {', '.join(sorted(names)[:8])})"
    return text
