"""Experiments -> containers ("ML Experiment"), runs -> dataProcessInstances ("ML Training Run")."""
from __future__ import annotations

from typing import Iterator, Sequence

from connector.mapping import urns
from connector.mapping.common import (
    MappingContext, Mcp, audit_stamp, custom_properties, drop_none, external_url, hyper_params,
    logged_model_urn, mcp, metrics, platform_instance_aspect, run_urn, status, time_stamp, version_urn,
)
from connector.mapping.datasets import dataset_urn_for
from connector.mapping.evaluation import evaluation_run_properties, run_subtype
from connector.mapping.prompts import linked_prompt_urns
from connector.secrets import redact_url
from connector.source.mlflow_objects import Experiment, LoggedModel, ModelVersion, Run

NOTE_TAG = "mlflow.note.content"
PARENT_RUN_TAG = "mlflow.parentRunId"
_RESULTS = {"FINISHED": "SUCCESS", "FAILED": "FAILURE"}  # KILLED and the rest: SKIPPED
_ENDED = {"FINISHED", "FAILED", "KILLED"}


def experiment_container_urn(ctx: MappingContext, experiment: Experiment) -> str:
    return urns.experiment_urn(experiment.name, ctx.platform_instance)


def experiment_browse_path(ctx: MappingContext) -> dict:
    path = []
    if ctx.platform_instance:
        instance = urns.platform_instance_urn(ctx.platform_instance)
        path.append({"id": instance, "urn": instance})
    return {"path": path}


def map_experiment(ctx: MappingContext, experiment: Experiment) -> Iterator[Mcp]:
    urn = experiment_container_urn(ctx, experiment)
    # the container key's fields first, as DataHub's containers carry them; the tags go over them
    key = {"platform": urns.platform_urn(), "id": experiment.name}
    if ctx.platform_instance:
        key["instance"] = ctx.platform_instance
    tags = {**key, **{k: v for k, v in experiment.tags.items() if k != NOTE_TAG}}
    if experiment.artifact_location:  # the key DataHub's own source writes (and its users search by)
        tags["artifacts_location"] = redact_url(experiment.artifact_location)
    custom = custom_properties(tags, {"experiment_id": experiment.experiment_id,
                                      "artifacts_location": redact_url(experiment.artifact_location),
                                      "lifecycle_stage": experiment.lifecycle_stage})
    yield mcp(urn, "containerProperties", drop_none({
        "name": experiment.name,
        "description": experiment.tags.get(NOTE_TAG) or None,
        "customProperties": custom,
        "externalUrl": external_url(ctx, "experiments", experiment.experiment_id),
        "created": time_stamp(experiment.creation_time),
        "lastModified": time_stamp(experiment.last_update_time),
    }))
    yield mcp(urn, "subTypes", {"typeNames": ["ML Experiment"]})
    yield mcp(urn, "dataPlatformInstance", platform_instance_aspect(ctx))
    yield mcp(urn, "browsePathsV2", experiment_browse_path(ctx))
    yield mcp(urn, "status", status(experiment.lifecycle_stage == "deleted"))


def run_outputs(ctx: MappingContext, produced_versions: Sequence[ModelVersion],
                logged_models: list[LoggedModel]) -> list[str]:
    """The models a run produced: the versions registered from it, and its LoggedModels no
    version registers (those the crawler hands over, with include_logged_models)."""
    outputs = [version_urn(ctx, v.name, v.version) for v in produced_versions]
    registered = {v.model_id for v in produced_versions if v.model_id}
    outputs += [logged_model_urn(ctx, lm.name, lm.model_id) for lm in logged_models
                if lm.model_id not in registered]
    return list(dict.fromkeys(outputs))


def map_run(ctx: MappingContext, run: Run, experiment: Experiment,
            produced_versions: Sequence[ModelVersion], logged_models: Sequence[LoggedModel] = ()) -> Iterator[Mcp]:
    urn = run_urn(ctx, run.run_id)
    url = external_url(ctx, "experiments", run.experiment_id, "runs", run.run_id)
    custom = custom_properties(run.tags, {"status": run.status, "experiment_id": run.experiment_id,
                                          "lifecycle_stage": run.lifecycle_stage, **evaluation_run_properties(run)})
    yield mcp(urn, "dataProcessInstanceProperties", drop_none({
        "name": run.run_name or run.run_id,
        "created": audit_stamp(run.start_time, run.user_id),
        "externalUrl": url,
        "customProperties": custom,
        "type": "BATCH_AD_HOC",
    }))
    yield mcp(urn, "subTypes", {"typeNames": [run_subtype(run, "ML Training Run")]})
    yield mcp(urn, "container", {"container": experiment_container_urn(ctx, experiment)})
    yield mcp(urn, "mlTrainingRunProperties", drop_none({
        "id": run.run_id,
        "hyperParams": hyper_params(run.params),
        "trainingMetrics": metrics(run.metrics),
        "outputUrls": [redact_url(run.artifact_uri)] if run.artifact_uri else [],
        "externalUrl": url,
        "customProperties": {},
    }))
    if run.start_time is not None:
        yield mcp(urn, "dataProcessInstanceRunEvent", {
            "timestampMillis": run.start_time, "status": "STARTED", "attempt": 1,
        })
    if run.status in _ENDED and run.end_time is not None:
        event = {
            "timestampMillis": run.end_time,
            "status": "COMPLETE",
            "attempt": 1,
            "result": {"type": _RESULTS.get(run.status, "SKIPPED"), "nativeResultType": urns.PLATFORM},
        }
        if run.start_time is not None:
            event["durationMillis"] = max(0, run.end_time - run.start_time)
        yield mcp(urn, "dataProcessInstanceRunEvent", event)
    # the prompt versions the run loaded (include_prompts): lineage prompt version -> run -> model
    inputs = list(dict.fromkeys([dataset_urn_for(ctx, i.dataset) for i in run.dataset_inputs]
                                + linked_prompt_urns(ctx, run.tags)))
    if inputs:
        yield mcp(urn, "dataProcessInstanceInput", {
            "inputs": inputs, "inputEdges": [{"destinationUrn": u} for u in inputs],
        })
    outputs = run_outputs(ctx, produced_versions, list(logged_models))
    if outputs:
        yield mcp(urn, "dataProcessInstanceOutput", {
            "outputs": outputs, "outputEdges": [{"destinationUrn": u} for u in outputs],
        })
    parent = run.tags.get(PARENT_RUN_TAG)
    if parent:  # a nested run: linked to the run it is part of
        yield mcp(urn, "dataProcessInstanceRelationships", {
            "upstreamInstances": [], "parentInstance": run_urn(ctx, parent)})
    yield mcp(urn, "dataPlatformInstance", platform_instance_aspect(ctx))
    # dataProcessInstance takes no ownership aspect: the run's user is the `created` actor
    # and the owner of the model versions it produced.
    yield mcp(urn, "status", status(run.lifecycle_stage == "deleted"))
