"""The proposal record and the aspect pieces every entity mapping shares."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote

from connector.mapping import urns

UNKNOWN_USER = "unknown"  # what MLflow writes when it cannot tell who ran something
# Built-in custom properties are keyed `mlflow#NAME`: `#` cannot appear in an MLflow tag key,
# so a user tag `status` or `experiment_id` is never overwritten by a built-in value.
BUILTIN_PREFIX = "mlflow#"


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
    dataset_urn: str = "source"  # "source": datasets keyed by name and source; "name": by name (DataHub's source)
    # "ai_agent" (DataHub 1.7's aiAgent) or "ml_model" (older catalogs); out of repr (the settings'
    # hash): settings.source_filters holds it when agents are crawled
    agents_as: str = field(default="ai_agent", repr=False)
    link_prompts: bool = field(default=False, repr=False)  # include_prompts: runs link the prompts they loaded


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
    stamp: dict = {"time": int(millis)}
    if user:
        stamp["actor"] = urns.corpuser_urn(user)
    return stamp


def audit_stamp(millis: Optional[int], user: Optional[str] = None) -> dict:
    return {"time": int(millis or 0), "actor": urns.corpuser_urn(user) if user else "urn:li:corpuser:unknown"}


def known_user(user: Optional[str]) -> Optional[str]:
    """The user, or None for none or MLflow's placeholder `unknown` (not a person)."""
    return user if user and user != UNKNOWN_USER else None


def ownership(user: Optional[str], millis: Optional[int]) -> Optional[dict]:
    person = known_user(user)
    if person is None:
        return None
    return {
        "owners": [{"owner": urns.corpuser_urn(person), "type": "TECHNICAL_OWNER"}],
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


def custom_properties(tags: dict[str, str], builtins: dict) -> dict[str, str]:
    """User tags as they are (empty values too), with the non-empty built-in values beside them."""
    props = dict(tags)
    props.update({f"{BUILTIN_PREFIX}{k}": v for k, v in builtins.items() if v})
    return sorted_props(props)


def drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def logged_model_name(ctx: MappingContext, name: str, model_id: str) -> str:
    """An unregistered LoggedModel's name in the catalog: NAME_MODELID. The model id (m-...) keeps
    it apart from versions (NAME_<number>) and from other LoggedModels of the same NAME; its
    features use it as their namespace for the same reason."""
    return f"{name}{ctx.model_name_separator}{model_id}"


def logged_model_urn(ctx: MappingContext, name: str, model_id: str) -> str:
    return urns.plain_model_urn(logged_model_name(ctx, name, model_id), ctx.env, instance=ctx.platform_instance)


def version_urn(ctx: MappingContext, name: str, version: str) -> str:
    """Version VERSION of registered model NAME (as the mlModel NAME_VERSION)."""
    return urns.model_urn(name, version, ctx.model_name_separator, ctx.env, instance=ctx.platform_instance)


def run_urn(ctx: MappingContext, run_id: str) -> str:
    return urns.run_urn(run_id, instance=ctx.platform_instance)


def external_url(ctx: MappingContext, *parts: str) -> Optional[str]:
    """An MLflow UI link: BASE/#/<parts>, each part URL-quoted."""
    if not ctx.base_external_url:
        return None
    path = "/".join(quote(str(p), safe="") for p in parts)
    return f"{ctx.base_external_url.rstrip('/')}/#/{path}"
