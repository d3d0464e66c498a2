"""Locate the shipped ``rules/`` and ``templates/`` folders.

In a wheel they are ``bnlint/rules`` and ``bnlint/templates``. In a source checkout
(``python -m bnlint`` from the repository, or a test run with the repository on
``sys.path``) they sit beside the ``bnlint`` package; setuptools' editable install maps
them live. This module makes all three look the same: ``bnlint.rules`` is always an
importable package and :func:`data_dir` always finds the folder.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

_PKG = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """The folder holding the shipped ``rules`` or ``templates``."""
    module = sys.modules.get(f"bnlint.{name}")
    spec = None if module is not None else importlib.util.find_spec(f"bnlint.{name}")
    locations = list(getattr(module, "__path__", [])) + list(
        (spec.submodule_search_locations or []) if spec is not None else []
    )
    locations.append(str(_PKG / name))
    if (_PKG.parent / "pyproject.toml").is_file():  # a source checkout
        locations.append(str(_PKG.parent / name))
    for location in locations:
        candidate = Path(location)
        if (candidate / "__init__.py").is_file():
            return candidate
    raise RuntimeError(f"bnlint installation is missing its {name}/ directory")


def rules_package() -> ModuleType:
    """Import ``bnlint.rules``, creating it from the checkout's ``rules/`` when needed."""
    existing = sys.modules.get("bnlint.rules")
    if existing is not None:
        return existing
    if importlib.util.find_spec("bnlint.rules") is not None:
        return importlib.import_module("bnlint.rules")
    init = data_dir("rules") / "__init__.py"
    spec = importlib.util.spec_from_file_location(
        "bnlint.rules", init, submodule_search_locations=[str(init.parent)]
    )
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import the built-in rules from {init.parent}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bnlint.rules"] = module
    spec.loader.exec_module(module)
    return module
