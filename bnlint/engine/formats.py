"""Which rules run on which input format, and on what evidence: the one table.

Each format (as ``GraphFacts.format`` names it) holds some of what rules need: the
dataflow graph's edges, producer->BN edges only, parameter values, PyTorch module
attributes, a phase. A rule's evidence on a format follows from its ``needs`` and phases:

- ``read``: everything the rule needs is in the file;
- ``inferred``: the rule runs on edges inferred from ``nn.Sequential`` order or from
  parameter names and shapes (its findings say so);
- ``unavailable``: the format cannot carry what the rule needs (``condition`` says what
  would make it run, e.g. ``--phase`` for a state dict).

The documentation's table (``docs/formats.md``), ``bnlint rules --format json`` and the
loaders' facts (a test checks each loader against its profile) all come from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bnlint.rule import Rule

READ, INFERRED, UNAVAILABLE = "read", "inferred", "unavailable"


@dataclass(frozen=True)
class FormatProfile:
    name: str
    label: str
    edges: str  # read | inferred | producer (producer->BN only, inferred) | none
    modules: bool  # PyTorch module attributes (requires_grad, module classes)
    phase: bool  # the file says what the model is for (a default phase)
    attributes: bool = True  # BN hyper-parameters (eps, momentum) are stored
    runnable: str = "--trust-model-code"  # what makes a runnable model (--verify, samples)


PROFILES: dict[str, FormatProfile] = {
    profile.name: profile
    for profile in (
        FormatProfile("onnx", "ONNX", "read", False, True, runnable="the ort extra"),
        FormatProfile("pt2", "torch.export (.pt2)", "read", True, True),
        FormatProfile("torchscript", "TorchScript (static or trusted)", "read", True, True),
        FormatProfile(
            "module", "module:factory / nn.Module", "read", True, True, runnable="always"
        ),
        FormatProfile("pickled_module", "pickled nn.Module (static)", "inferred", True, True),
        FormatProfile(
            "state_dict", "state dict / checkpoint", "producer", False, False, False, "--arch"
        ),
        FormatProfile(
            "safetensors", "safetensors", "producer", False, False, False, runnable="never"
        ),
    )
}
# BN attributes a state dict does not store: mode flags, eps, momentum, the module class
_ATTRIBUTE_RULES = {"BN003", "BN004", "BN014", "BN015", "BN019"}


def evidence(rule: Rule, profile: FormatProfile) -> dict[str, Any]:
    """``{"evidence": read|inferred|unavailable, "condition"?: str}`` for one rule."""
    needs = rule.spec.needs
    levels = [READ]
    if "edges" in needs:
        levels.append({"read": READ, "inferred": INFERRED}.get(profile.edges, UNAVAILABLE))
    if "producer_edges" in needs:
        levels.append(
            {"read": READ, "inferred": INFERRED, "producer": INFERRED}.get(
                profile.edges, UNAVAILABLE
            )
        )
    if "modules" in needs and not profile.modules:
        levels.append(UNAVAILABLE)
    if rule.code in _ATTRIBUTE_RULES and not profile.attributes:
        levels.append(UNAVAILABLE)
    if UNAVAILABLE in levels:
        return _entry(UNAVAILABLE, "--arch" if profile.name == "state_dict" else None)
    level = INFERRED if INFERRED in levels else READ
    if needs & {"runtime", "samples"}:  # they run the model
        if profile.runnable == "never":
            return _entry(UNAVAILABLE, None)
        if profile.runnable != "always":
            return _entry(level, profile.runnable)
    if not profile.phase and rule.spec.needs_phase and rule.origin != "diagnostic":
        return _entry(level, "--phase")
    return _entry(level, None)


def _entry(level: str, condition: str | None) -> dict[str, Any]:
    return {"evidence": level, "condition": condition} if condition else {"evidence": level}


def rule_formats(rule: Rule) -> dict[str, dict[str, Any]]:
    return {name: evidence(rule, profile) for name, profile in PROFILES.items()}


def markdown_table(rules: list[Rule]) -> str:
    """Rules × formats, one cell per pair: the evidence and what makes it run."""
    names = list(PROFILES)
    lines = [
        "| rule | " + " | ".join(PROFILES[n].label for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for rule in rules:
        if rule.origin == "diagnostic":
            continue
        cells = []
        for name in names:
            entry = evidence(rule, PROFILES[name])
            text, condition = entry["evidence"], entry.get("condition")
            if condition and text == UNAVAILABLE:
                text += f" (read with {condition})"
            elif condition:
                text += f" (with {condition})"
            cells.append(text)
        lines.append(f"| {rule.code} {rule.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
