"""The proposal record and the aspect pieces every entity mapping shares."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote

from connector.mapping import urns


@dataclass(frozen=True, slots=True)
class Mcp:
    """One metadata change proposal (UPSERT of one aspect), before the sink encodes it."""

    entity_urn: str
    aspect_name: str
    aspect: dict

    @property
    def entity_type(self) -> str:
        return urns.entity_type(self.entity_urn)


@dataclass(frozen=True)
class MappingContext:
    env: str = "PROD"
    platform_instance: Optional[str] = None
    model_name_separator: str = "_"
    base_external_url: Optional[str] = None
    dataset_platform_mapping: dict = field(default_factory=dict)
    deployment_rules: tuple = ()  # mapping.deployments.DeploymentRule, from the recipe
    model_card_tag_prefix: str = "card."
    deprecation_tag: str = "deprecated"
    champion_alias: str = "champion"


def mcp(urn: str, aspect_name: str, aspect: dict) -> Mcp:
    return Mcp(urn, aspect_name, aspect)


def platform_instance_aspect(ctx: MappingContext) -> dict:
    aspect = {"platform": urns.platform_urn()}
    if ctx.platform_instance:
        aspect["instance"] = urns.platform_instance_urn(ctx.platform_instance)
    return aspect


def status(removed: bool = False) -> dict:
    return {"removed": removed}


def time_stamp(millis: Optional[int], user: Optional[str] = None) -> Optional[dict]:
    if millis is None:
        return None
    stamp = {"time": int(millis)}
    if user:
        stamp["actor"] = urns.corpuser_urn(user)
    return stamp


def audit_stamp(millis: Optional[int], user: Optional[str] = None) -> dict:
    return {"time": int(millis or 0), "actor": urns.corpuser_urn(user) if user else "urn:li:corpuser:unknown"}


def ownership(user: Optional[str], millis: Optional[int]) -> Optional[dict]:
    if not user:
        return None
    return {
        "owners": [{"owner": urns.corpuser_urn(user), "type": "TECHNICAL_OWNER"}],
        "ownerTypes": {},
        "lastModified": audit_stamp(millis, user),
    }


def metric_value(value: float, name: str = "") -> str:
    """Metrics as the catalog stores them: strings, with non-finite values spelled out."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"metric {name!r} has a value that is not a number: {str(value)[:100]!r}")
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value) if not value.is_integer() else str(value)


def hyper_params(params: dict[str, str]) -> list[dict]:
    return [{"name": k, "value": v} for k, v in sorted(params.items())]


def metrics(values: dict[str, float]) -> list[dict]:
    return [{"name": k, "value": metric_value(v, k)} for k, v in sorted(values.items())]


def sorted_props(props: dict[str, str]) -> dict[str, str]:
    return {k: str(v) for k, v in sorted(props.items())}


def drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def external_url(ctx: MappingContext, *parts: str) -> Optional[str]:
    """An MLflow UI link: BASE/#/<parts>, each part URL-quoted."""
    if not ctx.base_external_url:
        return None
    path = "/".join(quote(str(p), safe="") for p in parts)
    return f"{ctx.base_external_url.rstrip('/')}/#/{path}"
