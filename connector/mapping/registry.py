"""Registered models -> mlModelGroup, model versions -> mlModel, stages -> tags."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

from connector.mapping import urns
from connector.mapping.common import (
    MappingContext, Mcp, custom_properties, drop_none, external_url, hyper_params, known_user,
    logged_model_name, mcp, metric_value, metrics, ownership, platform_instance_aspect, sorted_props,
    run_urn, status, time_stamp, version_urn,
)
from connector.mapping.deployments import deployments_for_version
from connector.mapping.datasets import dataset_urn_for
from connector.mapping.experiments import experiment_container_urn
from connector.mapping.prompts import linked_prompt_names
from connector.mapping.model_cards import (
    card_tags, deprecation, deprecation_note, map_model_card, without_card_tags,
)
from connector.secrets import redact_url
from connector.source.artifacts import mlmodel_location
from connector.source.mlflow_objects import Experiment, LoggedModel, ModelVersion, RegisteredModel, Run

MLFLOW_ACTOR = "mlflow"  # the actor of what MLflow states with nobody known behind it
STAGES = (
    ("Production", "Production Stage for an ML model in MLflow Model Registry", "#308613"),
    ("Staging", "Staging Stage for an ML model in MLflow Model Registry", "#FACB66"),
    ("Archived", "Archived Stage for an ML model in MLflow Model Registry", "#5D7283"),
    ("None", "None Stage for an ML model in MLflow Model Registry", "#F2F4F5"),
)


def map_stage_tag(stage: str, description: str, color: str) -> Iterator[Mcp]:
    name = urns.stage_tag_name(stage)
    yield mcp(urns.tag_urn(name), "tagProperties", {"name": name, "description": description, "colorHex": color})
    yield mcp(urns.tag_urn(name), "status", status())


def _model_version_urn(ctx: MappingContext, version: ModelVersion) -> str:
    return version_urn(ctx, version.name, version.version)


def map_model_group(ctx: MappingContext, model: RegisteredModel, versions: Sequence[ModelVersion]) -> Iterator[Mcp]:
    urn = urns.model_group_urn(model.name, ctx.env, instance=ctx.platform_instance)
    training_jobs = list(dict.fromkeys(run_urn(ctx, v.run_id) for v in versions if v.run_id))
    latest = max(versions, key=lambda v: v.version_number).version if versions else None
    props = drop_none({
        "name": model.name,
        "description": model.description or None,
        "customProperties": sorted_props(without_card_tags(ctx.model_card_tag_prefix, model.tags)),
        "created": time_stamp(model.creation_timestamp, known_user(model.user_id)),
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
    note = deprecation_note(model.tags, ctx.deprecation_tag)
    if note:
        actor = urns.corpuser_urn(known_user(model.user_id) or MLFLOW_ACTOR)
        yield mcp(urn, "deprecation", deprecation(note, actor, None))
    yield mcp(urn, "status", status())


def _evaluated_keys(logged: Optional[LoggedModel]) -> set:
    return {(m.dataset_name, m.dataset_digest) for m in logged.metrics if m.dataset_name} if logged else set()


def training_inputs(run: Optional[Run], logged: Optional[LoggedModel] = None) -> list:
    """The run's inputs logged for training (context training, or none), less the datasets a
    LoggedModel metric was measured on (MLflow 3 logs evaluation datasets as inputs too)."""
    if run is None:
        return []
    evaluated = _evaluated_keys(logged)
    return [i for i in run.dataset_inputs
            if (i.context or "training").lower() in ("training", "train")
            and (i.dataset.name, i.dataset.digest) not in evaluated]


def _evaluation_dataset_urn(ctx: MappingContext, run: Optional[Run], metric) -> Optional[str]:
    """The dataset a metric was measured on: the run's input of that name and digest (MLflow 3
    logs it as an input). A metric names no source: by name alone only under `dataset_urn: name`."""
    inputs = run.dataset_inputs if run else []
    wanted = (metric.dataset_name, metric.dataset_digest)
    for matches in ([i for i in inputs if (i.dataset.name, i.dataset.digest) == wanted],
                    [i for i in inputs if i.dataset.name == metric.dataset_name]):
        if len({dataset_urn_for(ctx, i.dataset) for i in matches}) == 1:
            return dataset_urn_for(ctx, matches[0].dataset)
    if ctx.dataset_urn != "name":
        return None
    return urns.dataset_urn(urns.PLATFORM, metric.dataset_name, ctx.env, instance=ctx.platform_instance)


def _model_metrics(logged: Optional[LoggedModel]) -> list:
    """The LoggedModel's metrics, one per (key, dataset): the latest by step, then timestamp."""
    latest: dict = {}
    for m in logged.metrics if logged else ():
        key = (m.key, m.dataset_name, m.dataset_digest)
        if key not in latest or m.order >= latest[key].order:
            latest[key] = m
    return list(latest.values())


def _evaluated_entry(m) -> dict:
    digest = f" ({m.dataset_digest})" if m.dataset_digest else ""
    return {"name": m.key, "value": metric_value(m.value, m.key), "description": f"on dataset {m.dataset_name}{digest}"}


def _final_values(run: Optional[Run], plain: dict, evaluated: list) -> dict:
    """One value per metric: the run's final one, unless the model holds a value logged later
    (step, then timestamp; a tie goes to the run). MLflow 3's log_model links the run's metrics
    as they stand at that moment (often step 0) to the model: those copies lose to the run's
    final values. A run value that is one of the model's evaluated entries (same run, logged at
    or after it) is left out: it is listed once, with its dataset."""
    values: dict = {}
    evaluated_at: dict = {}
    for m in evaluated:
        if run is None or m.run_id in ("", run.run_id):
            evaluated_at[m.key] = max(evaluated_at.get(m.key, m.order), m.order)
    for key, value in (run.metrics if run else {}).items():
        order = run.metric_order.get(key, (0, 0)) if run else (0, 0)
        model = plain.get(key)
        if model is not None and model.order > order:
            values[key] = model.value
        elif key not in evaluated_at or evaluated_at[key] < order:
            values[key] = value
    for key, model in plain.items():
        if run is None or key not in run.metrics:
            values[key] = model.value
    return values


def _metrics_and_evaluations(ctx: MappingContext, run: Optional[Run], logged: Optional[LoggedModel]):
    """Training metrics and the datasets a metric was measured on: each metric's final value
    (see _final_values), then the model's evaluated entries described with their dataset."""
    if run is None and logged is None:
        return None, []
    model_metrics = _model_metrics(logged)
    plain = {m.key: m for m in model_metrics if not m.dataset_name}
    evaluated = sorted((m for m in model_metrics if m.dataset_name), key=lambda m: (m.key, m.dataset_name))
    listed = metrics(_final_values(run, plain, evaluated)) + [_evaluated_entry(m) for m in evaluated]
    datasets = [_evaluation_dataset_urn(ctx, run, m) for m in evaluated]
    return listed, list(dict.fromkeys(d for d in datasets if d))


def _ml_data_aspects(ctx: MappingContext, urn: str, run: Optional[Run], logged: Optional[LoggedModel],
                     evaluated: list[str]) -> Iterator[Mcp]:
    training = list(dict.fromkeys(dataset_urn_for(ctx, i.dataset) for i in training_inputs(run, logged)))
    if training:
        yield mcp(urn, "mlModelTrainingData", {"trainingData": [{"dataset": d} for d in training]})
    if evaluated:
        yield mcp(urn, "mlModelEvaluationData", {"evaluationData": [{"dataset": d} for d in evaluated]})


def _storage_location(version: ModelVersion, run: Optional[Run], logged: Optional[LoggedModel]) -> Optional[str]:
    """Where the version's files are: its LoggedModel's artifacts (MLflow 3, source models:/m-...),
    else its source, a runs:/ source resolved against its run's artifact URI."""
    if logged is not None and logged.artifact_uri:
        return logged.artifact_uri
    return mlmodel_location(version.source or "", run.artifact_uri if run else None)


def _shown(url: Optional[str]) -> Optional[str]:
    """A URL MLflow holds, as the catalog shows it: without a user:password@ part."""
    return redact_url(url) if url else url


@dataclass(frozen=True)
class VersionInputs:
    """What a version is mapped from besides its registry entry and its run."""
    logged_model: Optional[LoggedModel] = None  # MLflow 3: the LoggedModel it registers
    is_latest: Optional[bool] = None
    feature_urns: tuple = ()


@dataclass(frozen=True)
class _Version:
    """One version with everything it is mapped from."""
    version: ModelVersion
    model: RegisteredModel
    run: Optional[Run]
    inputs: VersionInputs
    owner_id: Optional[str]


def _version_properties(ctx: MappingContext, v: _Version, training_metrics) -> dict:
    version, run, logged_model = v.version, v.run, v.inputs.logged_model
    own_tags = without_card_tags(ctx.model_card_tag_prefix, version.tags)
    custom = custom_properties(own_tags, {
        "source": _shown(version.source), "status": version.status, "run_id": version.run_id,
        "current_stage": version.current_stage, "model_id": version.model_id,
        "artifact_uri": _shown(_storage_location(version, run, logged_model)),
        "linked_prompts": linked_prompt_names(ctx, logged_model.tags) if logged_model else "",
    })
    params = {**(run.params if run else {}), **(logged_model.params if logged_model else {})}
    props = drop_none({
        "name": f"{version.name}{ctx.model_name_separator}{version.version}",
        "description": version.description or None,
        "customProperties": custom,
        "externalUrl": external_url(ctx, "models", version.name, "versions", version.version),
        "created": time_stamp(version.creation_timestamp, v.owner_id),
        "lastModified": time_stamp(version.last_updated_timestamp),
        "version": {"versionTag": version.version},
        "hyperParams": hyper_params(params) if (run or logged_model) else None,
        "trainingMetrics": training_metrics,
        "tags": [f"{key}:{value}" for key, value in sorted(own_tags.items())],
        "groups": [urns.model_group_urn(v.model.name, ctx.env, instance=ctx.platform_instance)],
        "trainingJobs": [run_urn(ctx, version.run_id)] if version.run_id else [],
        "mlFeatures": list(v.inputs.feature_urns) or None,
    })
    if ctx.deployment_rules:
        # Always written when rules exist: a version that lost its alias loses the link.
        rules = ctx.deployment_rules
        props["deployments"] = [d.urn for d in deployments_for_version(rules, version, ctx.env, ctx.platform_instance)]
    return props


def _version_set_properties(ctx: MappingContext, v: _Version) -> dict:
    version = v.version
    props: dict = {
        "versionSet": urns.version_set_urn(v.model.name, instance=ctx.platform_instance),
        "version": {"versionTag": version.version, "metadataAttribution": {
            "time": int(version.creation_timestamp or 0),
            "actor": urns.corpuser_urn(v.owner_id or MLFLOW_ACTOR),
            "sourceDetail": {"source": urns.PLATFORM}}},
        "sortId": str(version.version_number).zfill(10),
        "aliases": [{"versionTag": alias} for alias in version.aliases],
    }
    if v.inputs.is_latest is not None:
        props["isLatest"] = v.inputs.is_latest
    return props


def _deprecation(ctx: MappingContext, urn: str, v: _Version) -> Iterator[Mcp]:
    version, model = v.version, v.model
    note = deprecation_note(version.tags, ctx.deprecation_tag, version.current_stage)
    if not note:
        return
    champion = model.aliases.get(ctx.champion_alias)
    replacement = (version_urn(ctx, model.name, champion)
                   if champion and champion != version.version else None)
    yield mcp(urn, "deprecation", deprecation(note, urns.corpuser_urn(v.owner_id or MLFLOW_ACTOR), replacement))


def map_model_version(ctx: MappingContext, version: ModelVersion, model: RegisteredModel,
                      run: Optional[Run], inputs: VersionInputs = VersionInputs()) -> Iterator[Mcp]:
    urn = _model_version_urn(ctx, version)
    owner_id = known_user(version.user_id) or known_user(run.user_id if run else "")
    v = _Version(version, model, run, inputs, owner_id)
    training_metrics, evaluated = _metrics_and_evaluations(ctx, run, inputs.logged_model)
    yield mcp(urn, "mlModelProperties", _version_properties(ctx, v, training_metrics))
    yield mcp(urn, "versionProperties", _version_set_properties(ctx, v))
    stage_tag = urns.tag_urn(urns.stage_tag_name(version.current_stage or "None"))
    yield mcp(urn, "globalTags", {"tags": [{"tag": stage_tag}]})
    yield mcp(urn, "dataPlatformInstance", platform_instance_aspect(ctx))
    owner = ownership(owner_id, version.creation_timestamp)
    if owner:
        yield mcp(urn, "ownership", owner)
    yield from _ml_data_aspects(ctx, urn, run, inputs.logged_model, evaluated)
    yield from map_model_card(urn, card_tags(ctx.model_card_tag_prefix, model.tags, version.tags))
    yield from _deprecation(ctx, urn, v)
    yield mcp(urn, "status", status())


def map_logged_model(ctx: MappingContext, logged: LoggedModel, experiment: Experiment,
                     run: Optional[Run] = None, feature_urns: tuple = ()) -> Iterator[Mcp]:
    """An MLflow 3 LoggedModel no registry version points at (include_logged_models). Its name
    ends with its model id (m-...), so it cannot collide with a version (NAME_<number>)."""
    name = logged_model_name(ctx, logged.name, logged.model_id)
    urn = urns.plain_model_urn(name, ctx.env, instance=ctx.platform_instance)
    training_metrics, evaluated = _metrics_and_evaluations(ctx, run, logged)
    custom = custom_properties({k: v for k, v in logged.tags.items() if not k.startswith("mlflow.")}, {
        "model_id": logged.model_id, "status": logged.status, "model_type": logged.model_type,
        "artifact_uri": _shown(logged.artifact_uri), "source_run_id": logged.source_run_id,
        "linked_prompts": linked_prompt_names(ctx, logged.tags)})
    user = known_user(logged.tags.get("mlflow.user"))
    yield mcp(urn, "mlModelProperties", drop_none({
        "name": name,
        "customProperties": custom,
        "externalUrl": external_url(ctx, "experiments", logged.experiment_id, "models", logged.model_id),
        "created": time_stamp(logged.creation_timestamp, user),
        "lastModified": time_stamp(logged.last_updated_timestamp),
        "hyperParams": hyper_params({**(run.params if run else {}), **logged.params}),
        "trainingMetrics": training_metrics,
        "trainingJobs": [run_urn(ctx, logged.source_run_id)] if logged.source_run_id else [],
        "mlFeatures": list(feature_urns) or None,
    }))
    yield mcp(urn, "container", {"container": experiment_container_urn(ctx, experiment)})
    yield mcp(urn, "dataPlatformInstance", platform_instance_aspect(ctx))
    yield from _ml_data_aspects(ctx, urn, run, logged, evaluated)
    yield mcp(urn, "status", status())
