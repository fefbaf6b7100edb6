"""Agents (LoggedModels of model_type "agent") -> DataHub 1.7's aiAgent entity, or, with
`agents_as: ml_model` for an older catalog, the mlModel a LoggedModel is (docs/genai.md).

An aiAgent shows: its info (name, the description of the model or its run), its dependencies
(aiAgentDependencies.models: the registry versions of the agent and the prompt versions it links),
upstream lineage to the datasets its run read, its version among the agents of its name, owner."""
from __future__ import annotations

from typing import Iterator, Optional

from connector.mapping import urns
from connector.mapping.common import (
    MappingContext, Mcp, audit_stamp, known_user, logged_model_name, mcp, ownership, platform_instance_aspect,
    status, version_urn,
)
from connector.mapping.datasets import dataset_urn_for
from connector.mapping.prompts import linked_prompt_urns
from connector.mapping.registry import map_logged_model
from connector.source.crawl_records import AgentRecord
from connector.source.mlflow_objects import LoggedModel, Run, name_version_pairs

AI_AGENT = "ai_agent"
ML_MODEL = "ml_model"
DESCRIPTION_TAG = "mlflow.note.content"  # MLflow's description of a run or model
MLFLOW_ACTOR = "mlflow"


def agent_urn(ctx: MappingContext, lm: LoggedModel) -> str:
    return urns.ai_agent_urn(logged_model_name(ctx, lm.name, lm.model_id), ctx.platform_instance)


def registered_versions(lm: LoggedModel) -> list[tuple[str, str]]:
    """The registry versions of the LoggedModel (its `mlflow.modelVersions` tag)."""
    return list(name_version_pairs(lm.tags.get("mlflow.modelVersions") or ""))


def dependency_models(ctx: MappingContext, lm: LoggedModel) -> list[str]:
    """The mlModels the agent uses: its registry versions, then the prompt versions it links
    (when the prompts are in the catalog: include_prompts)."""
    models = [version_urn(ctx, name, version) for name, version in registered_versions(lm)]
    models += linked_prompt_urns(ctx, lm.tags)
    return list(dict.fromkeys(models))


def _description(lm: LoggedModel, run: Optional[Run]) -> Optional[str]:
    return lm.tags.get(DESCRIPTION_TAG) or (run.tags.get(DESCRIPTION_TAG) if run else None) or None


def _upstreams(ctx: MappingContext, run: Optional[Run], stamp: dict) -> list[dict]:
    datasets = dict.fromkeys(dataset_urn_for(ctx, i.dataset) for i in (run.dataset_inputs if run else ()))
    return [{"dataset": d, "type": "TRANSFORMED", "auditStamp": stamp} for d in datasets]


def _version_properties(ctx: MappingContext, record: AgentRecord, user: Optional[str]) -> dict:
    lm = record.logged_model
    return {
        "versionSet": urns.agent_version_set_urn(lm.experiment_id, lm.name, ctx.platform_instance),
        "version": {"versionTag": lm.model_id, "metadataAttribution": {
            "time": int(lm.creation_timestamp or 0), "actor": urns.corpuser_urn(user or MLFLOW_ACTOR),
            "sourceDetail": {"source": urns.PLATFORM}}},
        # newest last: MLflow numbers no agent versions, its model ids are not ordered
        "sortId": f"{int(lm.creation_timestamp or 0):015d}-{lm.model_id}",
        "isLatest": record.is_latest,
    }


def map_ai_agent(ctx: MappingContext, record: AgentRecord) -> Iterator[Mcp]:
    lm, run = record.logged_model, record.run
    urn = agent_urn(ctx, lm)
    user = known_user(lm.tags.get("mlflow.user")) or known_user(run.user_id if run else None)
    created = audit_stamp(lm.creation_timestamp, user)
    info = {"name": lm.name or lm.model_id, "source": {"type": "EXTERNAL"}, "created": created,
            "lastModified": audit_stamp(lm.last_updated_timestamp or lm.creation_timestamp, user)}
    description = _description(lm, run)
    if description:
        info["description"] = description
    yield mcp(urn, "aiAgentInfo", info)
    # both always sent, empty too: a link gone in MLflow goes from the catalog
    yield mcp(urn, "aiAgentDependencies", {"models": dependency_models(ctx, lm)})
    yield mcp(urn, "upstreamLineage", {"upstreams": _upstreams(ctx, run, created)})
    yield mcp(urn, "versionProperties", _version_properties(ctx, record, user))
    yield mcp(urn, "dataPlatformInstance", platform_instance_aspect(ctx))
    owner = ownership(user, lm.creation_timestamp)
    if owner:
        yield mcp(urn, "ownership", owner)
    yield mcp(urn, "status", status())


def map_agent(ctx: MappingContext, record: AgentRecord) -> Iterator[Mcp]:
    """An aiAgent; with `agents_as: ml_model` the LoggedModel's mlModel (none for an agent the
    registry holds: its registry versions are its mlModels already)."""
    if ctx.agents_as == AI_AGENT:
        yield from map_ai_agent(ctx, record)
    elif not record.logged_model.registered:
        yield from map_logged_model(ctx, record.logged_model, record.experiment, record.run)
