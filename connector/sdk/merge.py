"""Pure merge logic: what an SDK call writes is the aspect the catalog holds plus the change,
never the change alone (an UPSERT replaces the whole aspect)."""
from __future__ import annotations

from typing import Iterable, Optional

# List fields that are links: merged as a union (existing order first), never replaced.
LINK_FIELDS = {
    "mlModelProperties": ("groups", "trainingJobs", "downstreamJobs", "deployments", "mlFeatures"),
    "mlModelGroupProperties": ("trainingJobs", "downstreamJobs"),
}
# Map fields merged key by key (the change wins on a shared key).
MAP_FIELDS = ("customProperties",)
# Aspects holding a list of URNs beside the same URNs as edges.
EDGE_ASPECTS = {
    "dataProcessInstanceInput": ("inputs", "inputEdges"),
    "dataProcessInstanceOutput": ("outputs", "outputEdges"),
}

_AVRO_PREFIX = "com.linkedin.pegasus2avro."


def normalise_restli(value):
    """GMS may name union members `com.linkedin.pegasus2avro.X`; the JSON form we write says
    `com.linkedin.X`."""
    if isinstance(value, dict):
        return {(("com.linkedin." + k[len(_AVRO_PREFIX):]) if k.startswith(_AVRO_PREFIX) else k):
                normalise_restli(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise_restli(v) for v in value]
    return value


def union(existing: Optional[Iterable], new: Iterable) -> list:
    return list(dict.fromkeys([*(existing or []), *new]))


def merge_aspect(aspect_name: str, current: Optional[dict], change: dict) -> dict:
    """`current` with the fields of `change` written over it; links and maps are added to."""
    merged = dict(current or {})
    links = LINK_FIELDS.get(aspect_name, ())
    for key, value in change.items():
        if key in links:
            merged[key] = union(merged.get(key), value)
        elif key in MAP_FIELDS and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def add_edges(aspect_name: str, current: Optional[dict], destinations: Iterable[str]) -> dict:
    """dataProcessInstanceInput/Output with `destinations` added to both the URN list and the edges."""
    list_field, edge_field = EDGE_ASPECTS[aspect_name]
    merged = dict(current or {})
    destinations = list(destinations)
    merged[list_field] = union(merged.get(list_field), destinations)
    edges = list(merged.get(edge_field) or [])
    known = {e.get("destinationUrn") for e in edges}
    edges.extend({"destinationUrn": u} for u in dict.fromkeys(destinations) if u not in known)
    merged[edge_field] = edges
    return merged
