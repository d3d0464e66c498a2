"""Find, validate and select rules.

One mechanism, three sources: the built-in ``rules/`` package, the ``bnlint.rules``
entry-point group (third-party packages) and ``--rules-dir`` folders. Anything malformed
or colliding is refused loudly with :class:`RegistryError`.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from bnlint._resources import rules_package
from bnlint.diagnostics import DIAGNOSTICS
from bnlint.findings import Severity
from bnlint.rule import NEEDS, PHASES, REQUIRED_SECTIONS, Rule, RuleSpec, doc_sections

BUILTIN_CODE = re.compile(r"^BN0\d{2}$")
PLUGIN_CODE = re.compile(r"^[A-Z]{2,4}\d{3}$")
RULE_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
ENTRY_POINT_GROUP = "bnlint.rules"
# A plug-in's docs page: an absolute http(s) URL, since reports link to it (no javascript:)
PLUGIN_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")
NAMED = 100  # the specificity of a selector that is the rule's code or name

# Renamed rules, as ruff remaps codes: old code or old name -> current code. Selectors,
# ignores, rule tables and `bnlint explain` accept the old spelling; the rule's pages keep
# a redirect at the old URL (bnlint.docgen). A key here is retired for good: no rule may
# take that code or name again (docs/versioning.md).
REDIRECTS: dict[str, str] = {}


def redirect(code_or_name: str) -> str:
    """The current code for a renamed rule's old code or name; anything else unchanged."""
    key = code_or_name.strip()
    return REDIRECTS.get(key.upper(), REDIRECTS.get(key, key))


class RegistryError(Exception):
    """A rule module is malformed or collides with another rule."""


class SelectorError(ValueError):
    """A --select/--ignore entry matches no rule."""


def validate_module(module: ModuleType, origin: str) -> Rule:
    """Check a rule module against the contract and wrap it as a :class:`Rule`."""
    where = f"{origin} ({module.__name__})"
    spec = getattr(module, "RULE", None)
    if not isinstance(spec, RuleSpec):
        raise RegistryError(f"{where}: no RULE = RuleSpec(...) declared")
    check = getattr(module, "check", None)
    if not callable(check):
        raise RegistryError(f"{where}: no check(graph, ctx) function")
    pattern = BUILTIN_CODE if origin == "built-in" else PLUGIN_CODE
    if not pattern.match(spec.code) or (origin != "built-in" and spec.code.startswith("BN")):
        expected = (
            "BN0xx" if origin == "built-in" else "2-4 capital letters other than BN + 3 digits"
        )
        raise RegistryError(f"{where}: code {spec.code!r} is not of the form {expected}")
    if not RULE_NAME.match(spec.name):
        raise RegistryError(f"{where}: name {spec.name!r} is not kebab-case")
    if not isinstance(spec.severity, Severity):
        raise RegistryError(f"{where}: severity must be a bnlint.findings.Severity")
    if not spec.phases or not spec.phases <= set(PHASES):
        raise RegistryError(f"{where}: phases must be a non-empty subset of {PHASES}")
    if not spec.needs <= NEEDS:
        raise RegistryError(f"{where}: needs must be a subset of {sorted(NEEDS)}")
    if spec.url is not None:
        if origin == "built-in":
            raise RegistryError(f"{where}: a built-in rule's page is docs-url/CODE/, not url=")
        if not isinstance(spec.url, str) or not PLUGIN_URL.match(spec.url):
            raise RegistryError(f"{where}: url must be an absolute http(s) URL, not {spec.url!r}")
    doc = module.__doc__ or ""
    sections = doc_sections(doc)
    missing = [heading for heading in REQUIRED_SECTIONS if not sections.get(heading)]
    if spec.options and not sections.get("Options"):
        missing.append("Options")
    if missing or not doc.strip():
        raise RegistryError(f"{where}: docstring lacks sections: {', '.join(missing)}")
    return Rule(spec=spec, check=check, doc=doc, module=module.__name__, origin=origin)


def _builtin_modules() -> list[ModuleType]:
    package = rules_package()
    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__))
    return [importlib.import_module(f"{package.__name__}.{name}") for name in names]


def _rules_dir_modules(folder: Path) -> list[ModuleType]:
    if not folder.is_dir():
        raise RegistryError(f"{folder}: --rules-dir is not a directory")
    modules = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        name = f"bnlint_user_rules.{path.parent.name}.{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise RegistryError(f"{path}: cannot be imported as a rule module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        saved, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ left
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            raise RegistryError(f"{path}: failed to import: {error}") from error
        finally:
            sys.dont_write_bytecode = saved
        modules.append(module)
    return modules


def _entry_point_modules() -> Iterable[tuple[ModuleType, str]]:
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        origin = f"entry point {entry.name!r}"
        try:
            loaded = entry.load()
        except Exception as error:
            raise RegistryError(f"{origin}: failed to import: {error}") from error
        if not isinstance(loaded, ModuleType):
            raise RegistryError(f"{origin}: must name a rule module, not {type(loaded).__name__}")
        yield loaded, origin


@dataclass(frozen=True)
class RuleSet:
    """All known rules (diagnostics included), by code in code order."""

    rules: dict[str, Rule]

    def __iter__(self):
        return iter(self.rules.values())

    def get(self, code_or_name: str) -> Rule | None:
        key = redirect(code_or_name)
        if key.upper() in self.rules:
            return self.rules[key.upper()]
        return next((rule for rule in self.rules.values() if rule.name == key), None)

    @property
    def checkers(self) -> list[Rule]:
        return [rule for rule in self.rules.values() if rule.origin != "diagnostic"]

    def specificity(self, selector: str, rule: Rule) -> int | None:
        """How specifically ``selector`` names ``rule`` (None if it does not match)."""
        text = redirect(selector)
        if text.upper() == "ALL":
            return 0
        if text == rule.name or text.upper() == rule.code:
            return NAMED
        if rule.code.startswith(text.upper()) and re.fullmatch(r"[A-Za-z]+\d*", text):
            return len(text)
        return None

    def check_selectors(self, selectors: Iterable[str], origin: str) -> None:
        for selector in selectors:
            if not any(self.specificity(selector, rule) is not None for rule in self):
                raise SelectorError(f"{origin}: unknown rule selector {selector!r}")

    def is_enabled(self, rule: Rule, select: Sequence[str], ignore: Sequence[str]) -> bool:
        """ruff's semantics: the most specific matching selector wins; ignore wins ties.

        An opt-in rule (``enabled_by_default=False``) is enabled only by a selector that
        names it (its code or its name): ``ALL`` and prefixes leave it off.
        """
        chosen = [s for s in (self.specificity(x, rule) for x in select) if s is not None]
        dropped = [s for s in (self.specificity(x, rule) for x in ignore) if s is not None]
        if rule.origin == "diagnostic":
            return not dropped or max(dropped) < 3  # only BN9, BN90x or the code itself drop
        if not chosen or (not rule.spec.enabled_by_default and max(chosen) < NAMED):
            return False
        return not dropped or max(chosen) > max(dropped)


def _check_collisions(rules: list[Rule]) -> dict[str, Rule]:
    by_code: dict[str, Rule] = dict(DIAGNOSTICS)
    names = {rule.name: rule for rule in by_code.values()}
    for rule in rules:
        for retired in (rule.code, rule.name):
            if retired in REDIRECTS:
                raise RegistryError(
                    f"{rule.module}: {retired!r} was renamed to {REDIRECTS[retired]} and is "
                    "never reused; choose another"
                )
        if rule.code in by_code:
            other = by_code[rule.code]
            raise RegistryError(
                f"duplicate rule code {rule.code}: {rule.module} ({rule.origin}) and "
                f"{other.module} ({other.origin})"
            )
        if rule.name in names:
            raise RegistryError(
                f"duplicate rule name {rule.name!r}: {rule.module} and {names[rule.name].module}"
            )
        by_code[rule.code] = rule
        names[rule.name] = rule
    return dict(sorted(by_code.items()))


def load_rules(rules_dirs: Sequence[str] = (), plugins: bool = True) -> RuleSet:
    """Every rule from the built-in package, entry points and ``rules_dirs`` (cached)."""
    return _load_rules(tuple(str(folder) for folder in rules_dirs), bool(plugins))


@lru_cache(maxsize=8)
def _load_rules(rules_dirs: tuple[str, ...], plugins: bool) -> RuleSet:
    rules = [validate_module(module, "built-in") for module in _builtin_modules()]
    if plugins:
        rules += [validate_module(module, origin) for module, origin in _entry_point_modules()]
    for folder in rules_dirs:
        rules += [
            validate_module(module, f"rules dir {folder}")
            for module in _rules_dir_modules(Path(folder))
        ]
    return RuleSet(_check_collisions(rules))
