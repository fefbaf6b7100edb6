"""Model cards and deprecation from MLflow tags.

Tag convention (prefix configurable, default `card.`), on a registered model (for all its
versions) or on a version (wins over the model's). List values are separated by `;` or new
lines, or written as a JSON array.

    card.intended_use.primary_uses          card.ethics.data
    card.intended_use.primary_users         card.ethics.human_life
      (ENTERPRISE, HOBBY, ENTERTAINMENT)    card.ethics.mitigations
    card.intended_use.out_of_scope_uses     card.ethics.risks_and_harms
    card.caveats.description                card.ethics.use_cases
    card.caveats.needs_further_testing      card.factors.groups / .instrumentation / .environment
    card.caveats.groups_not_represented     card.evaluation_factors.groups / .instrumentation / .environment
    card.caveats.recommendations
    card.caveats.ideal_dataset_characteristics
"""
from __future__ import annotations

import json
from typing import Iterator, Optional

from connector.mapping.common import Mcp, mcp

# aspect -> {tag suffix: (field path, kind)}
_CARD: dict[str, dict] = {
    "intendedUse": {
        "intended_use.primary_uses": (("primaryUses",), "list"),
        "intended_use.primary_users": (("primaryUsers",), "users"),
        "intended_use.out_of_scope_uses": (("outOfScopeUses",), "list"),
    },
    "mlModelEthicalConsiderations": {
        f"ethics.{tag}": ((field,), "list") for tag, field in (
            ("data", "data"), ("human_life", "humanLife"), ("mitigations", "mitigations"),
            ("risks_and_harms", "risksAndHarms"), ("use_cases", "useCases"))
    },
    "mlModelCaveatsAndRecommendations": {
        "caveats.description": (("caveats", "caveatDescription"), "text"),
        "caveats.needs_further_testing": (("caveats", "needsFurtherTesting"), "bool"),
        "caveats.groups_not_represented": (("caveats", "groupsNotRepresented"), "list"),
        "caveats.recommendations": (("recommendations",), "text"),
        "caveats.ideal_dataset_characteristics": (("idealDatasetCharacteristics",), "list"),
    },
    "mlModelFactorPrompts": {
        f"{prefix}.{part}": ((field, part), "list")
        for prefix, field in (("factors", "relevantFactors"), ("evaluation_factors", "evaluationFactors"))
        for part in ("groups", "instrumentation", "environment")
    },
}
_USERS = {"ENTERPRISE", "HOBBY", "ENTERTAINMENT"}
_FALSE = {"", "false", "0", "no", "off"}


def _as_list(value: str) -> list[str]:
    value = value.strip()
    if value.startswith("["):
        try:
            parsed = json.loads(value)
            if isinstance(parsed, list):
                return [str(v).strip() for v in parsed if str(v).strip()]
        except ValueError:
            pass
    separator = ";" if ";" in value else "\n"
    return [part.strip() for part in value.split(separator) if part.strip()]


def _convert(value: str, kind: str):
    if kind == "list":
        return _as_list(value)
    if kind == "users":
        return [u.upper() for u in _as_list(value) if u.upper() in _USERS]
    if kind == "bool":
        return value.strip().lower() not in _FALSE
    return value.strip()


def card_tags(prefix: str, *tag_sets: dict) -> dict[str, str]:
    """The card tags of the given tag sets (later sets win), without the prefix."""
    merged: dict[str, str] = {}
    for tags in tag_sets:
        merged.update({k[len(prefix):]: v for k, v in tags.items() if prefix and k.startswith(prefix)})
    return merged


def without_card_tags(prefix: str, tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not (prefix and k.startswith(prefix))}


def map_model_card(urn: str, card: dict[str, str]) -> Iterator[Mcp]:
    for aspect_name, fields in _CARD.items():
        aspect: dict = {}
        for suffix, (path, kind) in fields.items():
            if suffix not in card:
                continue
            if aspect_name == "mlModelFactorPrompts":  # a list of one MLModelFactors record
                aspect.setdefault(path[0], [{}])[0][path[1]] = _convert(card[suffix], kind)
            elif len(path) == 2:
                aspect.setdefault(path[0], {})[path[1]] = _convert(card[suffix], kind)
            else:
                aspect[path[0]] = _convert(card[suffix], kind)
        if aspect:
            yield mcp(urn, aspect_name, aspect)


def deprecation(note: str, actor: str, replacement: Optional[str]) -> dict:
    aspect = {"deprecated": True, "note": note, "actor": actor}
    if replacement:
        aspect["replacement"] = replacement
    return aspect


def deprecation_note(tags: dict[str, str], tag: str, stage: Optional[str] = None) -> Optional[str]:
    """Why an entity is deprecated (None when it is not): the tag's value, or its Archived stage."""
    value = tags.get(tag) if tag else None
    if value is not None and value.strip().lower() not in _FALSE:
        return value.strip() if value.strip().lower() not in ("true", "1", "yes") else f"tagged {tag}"
    if stage == "Archived":
        return "Archived in the MLflow model registry"
    return None
