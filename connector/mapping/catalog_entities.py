"""Crawl records -> catalog entities, each with its proposals and a fingerprint of the MLflow
data it was made from (so an incremental run can tell what changed)."""
from __future__ import annotations

import hashlib
import json
from functools import partial
from typing import Callable, Iterator, Union

from connector.mapping.agents import map_agent
from connector.mapping.common import MappingContext, Mcp, logged_model_name
from connector.mapping.datasets import dataset_source_key, dataset_source_label, dataset_urn_for, map_dataset
from connector.mapping.deployments import deployments_for_version, map_deployment
from connector.mapping.evaluation import (
    evaluated_model_key, evaluation_dataset_urn, map_evaluation_dataset, with_evaluated_models, with_evaluations,
)
from connector.mapping.experiments import map_experiment, map_run
from connector.mapping.features import map_features
from connector.mapping.memory import MappingMemory
from connector.mapping.prompts import map_prompt, map_prompt_version
from connector.mapping.registry import (
    STAGES, VersionInputs, map_logged_model, map_model_group, map_model_version, map_stage_tag, training_inputs,
)
from connector.source.mlflow_objects import ModelVersion, RegisteredModel
from connector.source.crawl_records import (
    AgentRecord, EvaluationDatasetRecord, ExperimentRecord, LoggedModelRecord, ModelGroupRecord, PromptRecord,
    RunRecord, VersionRecord,
)


class MappedEntity:
    """An entity's URN and proposals; its fingerprint is computed when first asked for (only a run
    with state asks: a crawl without state would hash every entity for no one)."""

    __slots__ = ("urn", "proposals", "_fingerprint")

    def __init__(self, urn: str, fingerprint: Union[str, Callable[[], str]], proposals: tuple[Mcp, ...]):
        self.urn, self.proposals, self._fingerprint = urn, proposals, fingerprint

    @property
    def fingerprint(self) -> str:
        if callable(self._fingerprint):
            self._fingerprint = self._fingerprint()
        return self._fingerprint

    def __repr__(self) -> str:
        return f"MappedEntity({self.urn!r}, {len(self.proposals)} proposals)"


def _fields(obj):
    """A slots dataclass as the list of its field values (no deep copy, unlike asdict)."""
    slots = getattr(obj, "__slots__", None)
    return [getattr(obj, name) for name in slots] if slots else str(obj)


def fingerprint(*parts) -> str:
    text = json.dumps(parts, sort_keys=True, default=_fields, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8"), digest_size=8).hexdigest()


# Fingerprints of entities MLflow lists whole in every crawl although their URN kind (dataset) is
# not: an incremental crawl that does not list one again knows it is gone.
FULLY_LISTED_MARK = "listed:"
# Prompts are mlModelGroups too: their fingerprints say so, for the removal guard to count them
# apart from registered models (an empty model listing beside a full prompt listing is still empty).
PROMPT_MARK = "prompt:"


def _entity(fp: Union[str, Callable[[], str]], proposals) -> MappedEntity:
    proposals = tuple(proposals)
    return MappedEntity(proposals[0].entity_urn, fp, proposals)


def stage_tag_entities() -> Iterator[MappedEntity]:
    for stage in STAGES:
        yield _entity(partial(fingerprint, stage), map_stage_tag(*stage))


def run_fingerprint(record: RunRecord) -> str:
    evaluated = [evaluated_model_key(m) for m in record.evaluated_models]
    return fingerprint(record.run, record.experiment.name,
                       [(v.name, v.version) for v in record.produced_versions],
                       [(lm.name, lm.model_id) for lm in record.logged_models], *([evaluated] if evaluated else []))


def version_fingerprint(version: ModelVersion, model: RegisteredModel, is_latest: bool) -> str:
    """The registry's data only: a version's run data changes are caught through the run."""
    # the model's aliases (deprecation's replacement) and tags (model cards) shape versions too
    return fingerprint(version, model.name, version.run_id, is_latest, model.aliases, model.tags)


def _feature_entities(ctx, namespace: str, columns, run, logged, memory: MappingMemory):
    """(feature URNs, entities not yet emitted this run) for a model's signature columns."""
    if not columns:
        return (), []
    urns_, entities = [], []
    for urn, proposals in map_features(ctx, namespace, columns, training_inputs(run, logged)):
        urns_.append(urn)
        if memory.first_emission(urn):
            entities.append(MappedEntity(urn, partial(fingerprint, [(p.aspect_name, p.aspect) for p in proposals]),
                                         tuple(proposals)))
    return tuple(urns_), entities


def version_entities(ctx: MappingContext, record: VersionRecord, memory: MappingMemory) -> Iterator[MappedEntity]:
    """A version, the features of its signature and the deployments its rules give it."""
    run = record.run
    feature_urns, features = _feature_entities(ctx, record.model.name, record.signature_inputs, run,
                                               record.logged_model, memory)
    yield _entity(partial(version_fingerprint, record.version, record.model, record.is_latest), with_evaluations(
        ctx, map_model_version(ctx, record.version, record.model, run,
                               VersionInputs(record.logged_model, record.is_latest, feature_urns)),
        record.logged_model, memory.evaluation_datasets))
    yield from features
    for deployment in deployments_for_version(ctx.deployment_rules, record.version, ctx.env, ctx.platform_instance):
        if memory.first_emission(deployment.urn):
            yield _entity(partial(fingerprint, deployment.platform, deployment.properties),
                          map_deployment(deployment.urn, deployment.platform, deployment.properties))


def dataset_entities(ctx: MappingContext, run, memory: MappingMemory) -> Iterator[MappedEntity]:
    """The run's input datasets not yet emitted this crawl (two different datasets under one
    URN, possible with `dataset_urn: name`, leave a warning in `memory`)."""
    for dataset_input in run.dataset_inputs:
        dataset = dataset_input.dataset
        urn = dataset_urn_for(ctx, dataset)
        memory.saw_dataset(urn, fingerprint(dataset_source_key(dataset)), dataset_source_label(dataset))
        if memory.first_emission(urn):
            yield _entity(partial(fingerprint, dataset), map_dataset(ctx, dataset_input))


def prompt_entities(ctx: MappingContext, record: PromptRecord) -> Iterator[MappedEntity]:
    """A prompt's group, then each version (each its own fingerprint: a new version sends itself
    and the group, whose latest version changed)."""
    versions = record.versions
    yield _entity(lambda: PROMPT_MARK + fingerprint(record.prompt, [v.version for v in versions]),
                  map_prompt(ctx, record.prompt, versions))
    latest = max((v.version_number for v in versions), default=None)
    for version in versions:
        is_latest = version.version_number == latest
        yield _entity(partial(fingerprint, version, is_latest), map_prompt_version(ctx, version, is_latest))


def agent_entities(ctx: MappingContext, record: AgentRecord, memory: MappingMemory) -> Iterator[MappedEntity]:
    proposals = tuple(map_agent(ctx, record))
    if not proposals:  # agents_as ml_model, registered: its versions are its mlModels
        return
    if ctx.agents_as == "ml_model":  # an mlModel shows its evaluations (an aiAgent has no such aspect)
        proposals = tuple(with_evaluations(ctx, proposals, record.logged_model, memory.evaluation_datasets))
    if record.run is not None and ctx.agents_as == "ai_agent":  # its upstream datasets
        yield from dataset_entities(ctx, record.run, memory)
    yield _entity(partial(fingerprint, record.logged_model, record.run, record.is_latest), proposals)


def entities_of(ctx: MappingContext, record, memory: MappingMemory) -> Iterator[MappedEntity]:
    """The catalog entities of one crawled record; `memory` keeps entities several records
    share (datasets, features, deployments) to one emission per crawl, and collects warnings."""
    if isinstance(record, ExperimentRecord):
        yield _entity(partial(fingerprint, record.experiment), map_experiment(ctx, record.experiment))
    elif isinstance(record, EvaluationDatasetRecord):
        dataset = record.dataset
        urn = evaluation_dataset_urn(ctx, dataset.name, dataset.dataset_id)
        memory.saw_evaluation_dataset(dataset.name, urn)
        memory.first_emission(urn)  # the runs that read it do not describe it again
        yield _entity(lambda: FULLY_LISTED_MARK + fingerprint(dataset), map_evaluation_dataset(ctx, dataset))
    elif isinstance(record, RunRecord):
        yield from dataset_entities(ctx, record.run, memory)
        yield _entity(partial(run_fingerprint, record), with_evaluated_models(ctx, map_run(
            ctx, record.run, record.experiment, record.produced_versions, record.logged_models),
            record.evaluated_models))
    elif isinstance(record, ModelGroupRecord):
        yield _entity(partial(fingerprint, record.model, [(v.version, v.run_id) for v in record.versions]),
                      map_model_group(ctx, record.model, record.versions))
    elif isinstance(record, VersionRecord):
        yield from version_entities(ctx, record, memory)
    elif isinstance(record, LoggedModelRecord):
        lm, run = record.logged_model, record.run
        # its features under its own name (NAME_MODELID): the usual name `model` would mix experiments
        feature_urns, features = _feature_entities(ctx, logged_model_name(ctx, lm.name, lm.model_id),
                                                   lm.signature_inputs, run, lm, memory)
        yield _entity(partial(fingerprint, lm, run), with_evaluations(
            ctx, map_logged_model(ctx, lm, record.experiment, run, feature_urns), lm, memory.evaluation_datasets))
        yield from features
    elif isinstance(record, PromptRecord):
        yield from prompt_entities(ctx, record)
    elif isinstance(record, AgentRecord):
        yield from agent_entities(ctx, record, memory)


def describe(record) -> str:
    if isinstance(record, ExperimentRecord):
        return f"experiment {record.experiment.name!r}"
    if isinstance(record, RunRecord):
        return f"run {record.run.run_id}"
    if isinstance(record, ModelGroupRecord):
        return f"registered model {record.model.name!r}"
    if isinstance(record, EvaluationDatasetRecord):
        return f"evaluation dataset {record.dataset.name!r} ({record.dataset.dataset_id})"
    if isinstance(record, LoggedModelRecord):
        return f"logged model {record.logged_model.model_id}"
    if isinstance(record, PromptRecord):
        return f"prompt {record.prompt.name!r}"
    if isinstance(record, AgentRecord):
        return f"agent {record.logged_model.model_id}"
    return f"model version {record.version.name!r} v{record.version.version}"


__all__ = ["MappedEntity", "MappingMemory", "entities_of", "stage_tag_entities", "describe"]
