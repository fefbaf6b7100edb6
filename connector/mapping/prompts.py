"""Prompt Registry prompts -> mlModelGroup (sub-type "Prompt"), prompt versions -> mlModel
(sub-type "Prompt Version") with the template as documentation (docs/genai.md).

A prompt shares the registry's name space with registered models (MLflow keeps prompts as tagged
registered models), so its URNs are built the same way and never collide with a model's."""
from __future__ import annotations

import json
from typing import Iterator, Optional, Sequence

from connector.mapping import urns
from connector.mapping.common import (
    MappingContext, Mcp, custom_properties, drop_none, external_url, known_user, mcp, ownership,
    platform_instance_aspect, sorted_props, status, time_stamp, version_urn,
)
from connector.secrets import strip_url_credentials
from connector.source.mlflow_objects import ModelVersion, RegisteredModel, linked_prompts

PROMPT_SUBTYPE = "Prompt"
PROMPT_VERSION_SUBTYPE = "Prompt Version"
TEMPLATE_TAG = "mlflow.prompt.text"
# MLflow's own tags on a prompt version: shown as built-in properties (or the documentation), not as user tags
_BUILTIN_TAGS = {"_mlflow_prompt_type": "prompt_type", "_mlflow_prompt_response_format": "response_format",
                 "_mlflow_prompt_model_config": "model_config"}
MLFLOW_ACTOR = "mlflow"


def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith(("mlflow.", "_mlflow"))}


def prompt_group_urn(ctx: MappingContext, name: str) -> str:
    return urns.model_group_urn(name, ctx.env, instance=ctx.platform_instance)


def prompt_version_urn(ctx: MappingContext, name: str, version: str) -> str:
    return version_urn(ctx, name, version)


def linked_prompt_urns(ctx: MappingContext, tags: dict[str, str]) -> list[str]:
    """The prompt versions a run's or LoggedModel's `mlflow.linkedPrompts` tag names, when the
    prompts are in the catalog (include_prompts); none otherwise (no edge to a missing entity)."""
    if not ctx.link_prompts:
        return []
    return [prompt_version_urn(ctx, name, version) for name, version in linked_prompts(tags)]


def linked_prompt_names(ctx: MappingContext, tags: dict[str, str]) -> str:
    """`NAME/VERSION, ...`: the prompt versions a LoggedModel links, as a model's custom property
    (an mlModel has no lineage edge to another mlModel); "" without include_prompts."""
    if not ctx.link_prompts:
        return ""
    return ", ".join(f"{name}/{version}" for name, version in linked_prompts(tags))


def _subtypes(name: str) -> dict:
    return {"typeNames": [name]}


def map_prompt(ctx: MappingContext, prompt: RegisteredModel, versions: Sequence[ModelVersion]) -> Iterator[Mcp]:
    urn = prompt_group_urn(ctx, prompt.name)
    latest = max(versions, key=lambda v: v.version_number).version if versions else None
    yield mcp(urn, "mlModelGroupProperties", drop_none({
        "name": prompt.name,
        "description": prompt.description or None,
        "customProperties": sorted_props(_user_tags(prompt.tags)),
        "created": time_stamp(prompt.creation_timestamp, known_user(prompt.user_id)),
        "lastModified": time_stamp(prompt.last_updated_timestamp),
        "version": {"versionTag": latest} if latest else None,
        "externalUrl": external_url(ctx, "prompts", prompt.name),
    }))
    yield mcp(urn, "subTypes", _subtypes(PROMPT_SUBTYPE))
    yield mcp(urn, "dataPlatformInstance", platform_instance_aspect(ctx))
    owner = ownership(prompt.user_id, prompt.creation_timestamp)
    if owner:
        yield mcp(urn, "ownership", owner)
    yield mcp(urn, "status", status())


def template_markdown(template: str, prompt_type: str) -> str:
    """The template as Markdown: verbatim in a fenced block (its {{variables}} shown as written);
    a chat template message by message."""
    if prompt_type == "chat":
        try:
            messages = json.loads(template)
        except ValueError:
            messages = None
        if isinstance(messages, list) and all(isinstance(m, dict) for m in messages):
            return "\n\n".join(f"**{m.get('role', '?')}**\n\n{_fenced(str(m.get('content', '')))}" for m in messages)
    return _fenced(template)


def _fenced(text: str) -> str:
    fence = "```"
    while fence in text:  # a fence longer than any run of backticks in the text
        fence += "`"
    return f"{fence}\n{text}\n{fence}"


def _documentation(version: ModelVersion, owner: Optional[str]) -> Optional[dict]:
    template = version.tags.get(TEMPLATE_TAG)
    if template is None:
        return None
    template = strip_url_credentials(template)  # a URL's user:password@ in a template is a secret
    return {"documentations": [{
        "documentation": template_markdown(template, version.tags.get("_mlflow_prompt_type", "text")),
        "attribution": {"time": int(version.last_updated_timestamp or version.creation_timestamp or 0),
                        "actor": urns.corpuser_urn(owner or MLFLOW_ACTOR), "source": urns.platform_urn(),
                        "sourceDetail": {"tag": TEMPLATE_TAG}},
    }]}


def _version_set_properties(ctx: MappingContext, version: ModelVersion, owner: Optional[str], is_latest: bool) -> dict:
    return {
        "versionSet": urns.version_set_urn(version.name, instance=ctx.platform_instance),
        "version": {"versionTag": version.version, "metadataAttribution": {
            "time": int(version.creation_timestamp or 0), "actor": urns.corpuser_urn(owner or MLFLOW_ACTOR),
            "sourceDetail": {"source": urns.PLATFORM}}},
        "sortId": str(version.version_number).zfill(10),
        "aliases": [{"versionTag": alias} for alias in version.aliases],
        "isLatest": is_latest,
    }


def map_prompt_version(ctx: MappingContext, version: ModelVersion, is_latest: bool) -> Iterator[Mcp]:
    urn = prompt_version_urn(ctx, version.name, version.version)
    owner = known_user(version.user_id)
    builtins = {name: version.tags.get(tag, "") for tag, name in _BUILTIN_TAGS.items()}
    yield mcp(urn, "mlModelProperties", drop_none({
        "name": f"{version.name}{ctx.model_name_separator}{version.version}",
        "description": version.description or None,  # the version's commit message
        "customProperties": custom_properties(_user_tags(version.tags), {**builtins, "status": version.status}),
        "externalUrl": external_url(ctx, "prompts", version.name),
        "created": time_stamp(version.creation_timestamp, owner),
        "lastModified": time_stamp(version.last_updated_timestamp),
        "version": {"versionTag": version.version},
        "groups": [prompt_group_urn(ctx, version.name)],
    }))
    yield mcp(urn, "versionProperties", _version_set_properties(ctx, version, owner, is_latest))
    yield mcp(urn, "subTypes", _subtypes(PROMPT_VERSION_SUBTYPE))
    documentation = _documentation(version, owner)
    if documentation:
        yield mcp(urn, "documentation", documentation)
    yield mcp(urn, "dataPlatformInstance", platform_instance_aspect(ctx))
    owned = ownership(owner, version.creation_timestamp)
    if owned:
        yield mcp(urn, "ownership", owned)
    yield mcp(urn, "status", status())
