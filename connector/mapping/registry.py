"""Registered models -> mlModelGroup, model versions -> mlModel, stages -> tags."""
from __future__ import annotations

from typing import Iterator, Optional

from connector.mapping import urns
from connector.mapping.common import (
    MappingContext, Mcp, drop_none, external_url, hyper_params, mcp, metrics,
    ownership, platform_instance_aspect, sorted_props, status, time_stamp,
)
from connector.mapping.deployments import deployments_for_version
from connector.source.entities import ModelVersion, RegisteredModel, Run

STAGES = (
    ("Production", "Production Stage for an ML model in MLflow Model Registry", "#308613"),
    ("Staging", "Staging Stage for an ML model in MLflow Model Registry", "#FACB66"),
    ("Archived", "Archived Stage for an ML model in MLflow Model Registry", "#5D7283"),
    ("None", "None Stage for an ML model in MLflow Model Registry", "#F2F4F5"),
)


def map_stage_tags() -> Iterator[Mcp]:
    for stage, description, color in STAGES:
        name = urns.stage_tag_name(stage)
        yield mcp(urns.tag_urn(name), "tagProperties",
                  {"name": name, "description": description, "colorHex": color})


def _model_version_urn(ctx: MappingContext, version: ModelVersion) -> str:
    return urns.model_urn(version.name, version.version, ctx.model_name_separator, ctx.env)


def map_model_group(ctx: MappingContext, model: RegisteredModel, versions: list[ModelVersion]) -> Iterator[Mcp]:
    urn = urns.model_group_urn(model.name, ctx.env)
    training_jobs = list(dict.fromkeys(urns.run_urn(v.run_id) for v in versions if v.run_id))
    latest = max(versions, key=lambda v: v.version_number).version if versions else None
    props = drop_none({
        "name": model.name,
        "description": model.description or None,
        "customProperties": sorted_props(model.tags),
        "created": time_stamp(model.creation_timestamp, model.user_id),
        "lastModified": time_stamp(model.last_updated_timestamp),
        "version": {"versionTag": latest} if latest else None,
        "trainingJobs": training_jobs,
        "externalUrl": external_url(ctx, "models", model.name),
    })
    yield mcp(urn, "mlModelGroupProperties", props)
    yield mcp(urn, "dataPlatformInstance", platform_instance_aspect(ctx))
    owner = ownership(model.user_id, model.creation_timestamp)
    if owner:
        yield mcp(urn, "ownership", owner)
    yield mcp(urn, "status", status())


def map_model_version(ctx: MappingContext, version: ModelVersion, model: RegisteredModel,
                      run: Optional[Run]) -> Iterator[Mcp]:
    urn = _model_version_urn(ctx, version)
    custom = dict(version.tags)
    custom.update({k: v for k, v in {
        "source": version.source, "status": version.status, "run_id": version.run_id,
        "current_stage": version.current_stage,
    }.items() if v})
    owner_id = version.user_id or (run.user_id if run else "")
    props = drop_none({
        "name": f"{version.name}{ctx.model_name_separator}{version.version}",
        "description": version.description or None,
        "customProperties": sorted_props(custom),
        "externalUrl": external_url(ctx, "models", version.name, "versions", version.version),
        "created": time_stamp(version.creation_timestamp, owner_id),
        "lastModified": time_stamp(version.last_updated_timestamp),
        "version": {"versionTag": version.version},
        "hyperParams": hyper_params(run.params) if run else None,
        "trainingMetrics": metrics(run.metrics) if run else None,
        "tags": [f"{k}:{v}" for k, v in sorted(version.tags.items())],
        "groups": [urns.model_group_urn(model.name, ctx.env)],
        "trainingJobs": [urns.run_urn(version.run_id)] if version.run_id else [],
    })
    if ctx.deployment_rules:
        # Always written when rules exist: a version that lost its alias loses the link.
        props["deployments"] = [d.urn for d in deployments_for_version(ctx.deployment_rules, version, ctx.env)]
    yield mcp(urn, "mlModelProperties", props)
    yield mcp(urn, "versionProperties", {
        "versionSet": urns.version_set_urn(model.name),
        "version": {"versionTag": version.version},
        "sortId": str(version.version_number).zfill(10),
        "aliases": [{"versionTag": alias} for alias in version.aliases],
    })
    stage_tag = urns.tag_urn(urns.stage_tag_name(version.current_stage or "None"))
    yield mcp(urn, "globalTags", {"tags": [{"tag": stage_tag}]})
    yield mcp(urn, "dataPlatformInstance", platform_instance_aspect(ctx))
    owner = ownership(owner_id, version.creation_timestamp)
    if owner:
        yield mcp(urn, "ownership", owner)
    yield mcp(urn, "status", status())
