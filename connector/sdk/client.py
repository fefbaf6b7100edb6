"""The SDK client: create ML entities and link them by hand, through the connector's sinks.

URNs come from connector.mapping.urns, so what the SDK creates and what the MLflow source
ingests are the same entities. Every properties write is a merge (see merge.py): against the
REST sink the current aspect is read from the catalog first; against the file sink the client
keeps what it wrote and writes one final value per aspect on close(). A file cannot be read
back, so with the file sink a merge into an entity this client did not create is refused: it
would replace the ingested aspect with the change alone.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterable, Optional, Union

from pydantic import TypeAdapter, ValidationError

from connector.mapping import urns
from connector.mapping.common import MappingContext, Mcp, platform_instance_aspect, status
from connector.mapping.deployments import deployment_platform_instance
from connector.mapping.experiments import experiment_browse_path
from connector.config.recipe import Recipe, RecipeError, SinkSection, error_location, expand_env, load_recipe
from connector.sdk.foreign import properties_aspect
from connector.sdk.merge import add_edges, merge_aspect, normalise_restli
from connector.sdk.models import (
    DeploymentProperties, DeploymentStatus, ExperimentProperties, ModelGroupProperties, ModelProperties,
    RunProperties, RunResult, TrainingRunProperties,
)
from connector.report import new_run_id
from connector.config.settings import build_sink
from connector.sinks.base import Sink, SinkError, SinkResult
from connector.sinks.gms_client import GmsClient
from connector.sinks.rest import RestSink


def _now() -> int:
    return int(time.time() * 1000)


def _expect(urn: str, entity: str, argument: str) -> None:
    if not isinstance(urn, str) or not urn.startswith("urn:li:") or urns.entity_type(urn) != entity:
        raise ValueError(f"{argument}: expected a {entity} URN, got {urn!r}")


class CatalogClient:
    """Create and link ML entities. Use as a context manager, or call close() at the end.

    Every `properties` argument takes this SDK's typed model (connector.sdk.models) or DataHub's
    own aspect class (`models.MLModelPropertiesClass(...)`, ...); results and statuses take our
    enums, DataHub's (`RunResultType.FAILURE`) or their names."""

    def __init__(self, sink: Sink, *, env: str = "PROD", platform_instance: Optional[str] = None,
                 pipeline_name: Optional[str] = None):
        self.sink = sink
        self.ctx = MappingContext(env=env, platform_instance=platform_instance)
        self.run_id = new_run_id(pipeline_name or "sdk")
        # Against the catalog server, a reader of our own: the sink's client is busy sending from its threads.
        self._reader: Optional[GmsClient] = GmsClient(sink.client.settings) if isinstance(sink, RestSink) else None
        self._latest: dict[tuple[str, str], dict] = {}   # what this client wrote, per (urn, aspect)
        self._events: list[Mcp] = []                    # timeseries aspects, held for a file sink
        self._created: set[str] = set()                 # entities this client created (file sink: it may merge)
        self._closed = False

    # -- building --------------------------------------------------------------
    @classmethod
    def from_sink_config(cls, section: dict, **kwargs) -> "CatalogClient":
        """From a recipe's `sink:` section, e.g. {"type": "file", "config": {"filename": ...}}."""
        try:
            parsed = TypeAdapter(SinkSection).validate_python(expand_env(section, "sink"))
        except ValidationError as exc:
            lines = [f"sink.{error_location(e['loc'])}: {e['msg']}" for e in exc.errors()]
            raise RecipeError("invalid sink section:\n  " + "\n  ".join(lines)) from None
        return cls(build_sink(parsed), **kwargs)

    @classmethod
    def from_recipe(cls, recipe: Union[Recipe, str, Path]) -> "CatalogClient":
        """From a recipe: its sink, and its source's env and platform instance."""
        if not isinstance(recipe, Recipe):
            recipe = load_recipe(recipe)
        config = recipe.source.config
        return cls(build_sink(recipe.sink), env=config.env, platform_instance=config.platform_instance,
                   pipeline_name=recipe.pipeline_name)

    # -- URNs, exactly as the MLflow source builds them (with the client's platform_instance) ---
    def model_group_urn(self, group_id: str) -> str:
        return urns.model_group_urn(group_id, self.ctx.env, instance=self.ctx.platform_instance)

    def model_urn(self, model_id: str) -> str:
        return urns.plain_model_urn(model_id, self.ctx.env, instance=self.ctx.platform_instance)

    def model_version_urn(self, registered_model: str, version: Union[str, int], separator: str = "_") -> str:
        """A version of an MLflow registered model, as the source names it."""
        return urns.model_urn(registered_model, str(version), separator, self.ctx.env,
                              instance=self.ctx.platform_instance)

    def experiment_urn(self, experiment_name: str) -> str:
        return urns.experiment_urn(experiment_name, self.ctx.platform_instance)

    def run_urn(self, run_id: str) -> str:
        return urns.run_urn(run_id, instance=self.ctx.platform_instance)

    def dataset_urn(self, platform: str, name: str, env: Optional[str] = None) -> str:
        """On the mlflow platform a dataset MLflow holds, named with the instance; elsewhere where data lives."""
        held_by_mlflow = urns.platform_urn(platform) == urns.platform_urn()
        instance = self.ctx.platform_instance if held_by_mlflow else None
        return urns.dataset_urn(platform, name, env or self.ctx.env, instance)

    def deployment_urn(self, platform: str, name: str, env: Optional[str] = None) -> str:
        return urns.deployment_urn(platform, name, env or self.ctx.env, self.ctx.platform_instance)

    # -- entities ----------------------------------------------------------------
    def create_model_group(self, group_id: str, properties: Union[ModelGroupProperties, Any, None] = None) -> str:
        urn = self.model_group_urn(group_id)
        self._created.add(urn)
        change = properties_aspect(properties, "mlModelGroupProperties", "properties", ModelGroupProperties,
                                   lambda p: p.to_aspect()) or {}
        self._merge(urn, "mlModelGroupProperties", change, defaults={"name": group_id})
        self._platform_and_status(urn)
        return urn

    def create_model(self, model_id: str, version: Union[str, int], alias: Optional[str] = None,
                     properties: Union[ModelProperties, Any, None] = None,
                     version_set: Optional[str] = None) -> str:
        """A model (one version). Models sharing `version_set` (default: model_id) are versions
        of one another, like the versions of a registered model."""
        urn = self.model_urn(model_id)
        self._created.add(urn)
        version = str(version)
        change = properties_aspect(properties, "mlModelProperties", "properties", ModelProperties,
                                   lambda p: p.to_aspect()) or {}
        change["version"] = {"versionTag": version}
        self._merge(urn, "mlModelProperties", change, defaults={"name": model_id})
        current = self._current(urn, "versionProperties") or {}
        aliases = [a for a in current.get("aliases") or [] if a.get("versionTag") != alias]
        if alias:
            aliases.append({"versionTag": alias})
        self._put(urn, "versionProperties", {
            **current,
            "versionSet": urns.version_set_urn(version_set or model_id, instance=self.ctx.platform_instance),
            "version": {"versionTag": version},
            "sortId": version.zfill(10) if version.isdigit() else version,
            "aliases": aliases,
        })
        self._platform_and_status(urn)
        return urn

    def create_experiment(self, experiment_id: str, properties: Union[ExperimentProperties, Any, None] = None) -> str:
        urn = self.experiment_urn(experiment_id)
        self._created.add(urn)
        change = properties_aspect(properties or ExperimentProperties(), "containerProperties", "properties",
                                   ExperimentProperties, lambda p: p.to_aspect(default_name=experiment_id))
        self._merge(urn, "containerProperties", change, defaults={"name": experiment_id})
        self._put(urn, "subTypes", {"typeNames": ["ML Experiment"]})
        self._put(urn, "browsePathsV2", experiment_browse_path(self.ctx))
        self._platform_and_status(urn)
        return urn

    def create_training_run(self, run_id: str, properties: Union[RunProperties, Any, None] = None,
                            training_run_properties: Union[TrainingRunProperties, Any, None] = None,
                            run_result: Union[RunResult, str, None] = None,
                            start_timestamp: Optional[int] = None,
                            end_timestamp: Optional[int] = None) -> str:
        """A training run; with `run_result` it is complete (a STARTED and a COMPLETE event)."""
        urn = self.run_urn(run_id)
        self._created.add(urn)
        result = RunResult(run_result) if run_result is not None else None
        start = start_timestamp if start_timestamp is not None else (_now() if result else None)
        props = properties_aspect(properties or RunProperties(), "dataProcessInstanceProperties", "properties",
                                  RunProperties, lambda p: p.to_aspect(default_name=run_id,
                                                                       default_time=start or _now()))
        self._merge(urn, "dataProcessInstanceProperties", props, defaults={"name": run_id, "type": "BATCH_AD_HOC"})
        self._put(urn, "subTypes", {"typeNames": ["ML Training Run"]})
        training = properties_aspect(training_run_properties or TrainingRunProperties(), "mlTrainingRunProperties",
                                     "training_run_properties", TrainingRunProperties,
                                     lambda p: p.to_aspect(default_id=run_id))
        self._merge(urn, "mlTrainingRunProperties", training, defaults={"id": run_id})
        if start is not None:
            self._event(urn, {"timestampMillis": start, "status": "STARTED", "attempt": 1})
        if result:
            end = end_timestamp if end_timestamp is not None else _now()
            self._event(urn, {
                "timestampMillis": end, "status": "COMPLETE", "attempt": 1,
                "result": {"type": result.value, "nativeResultType": urns.PLATFORM},
                "durationMillis": max(0, end - (start if start is not None else end)),
            })
        self._platform_and_status(urn)
        return urn

    def create_deployment(self, name: str, platform: str, env: Optional[str] = None,
                          properties: Union[DeploymentProperties, Any, None] = None,
                          platform_instance: Optional[str] = None) -> str:
        """A model deployment (an endpoint serving a model) on `platform` (sagemaker, kserve, ...)."""
        urn = self.deployment_urn(platform, name, env)
        self._created.add(urn)
        change = properties_aspect(properties, "mlModelDeploymentProperties", "properties", DeploymentProperties,
                                   lambda p: p.to_aspect()) or {}
        self._merge(urn, "mlModelDeploymentProperties", change)
        self._put(urn, "dataPlatformInstance", deployment_platform_instance(platform, platform_instance))
        self._put(urn, "status", status())
        return urn

    # -- links ---------------------------------------------------------------------
    def _link(self, urn: tuple[str, str, str], target: tuple[str, str, str], aspect_name: str, field: str) -> None:
        """Add `target` to the list `field` of `urn`'s aspect; each is (URN, entity type, argument name)."""
        _expect(*urn)
        _expect(*target)
        self._merge(urn[0], aspect_name, {field: [target[0]]})

    def add_model_to_model_group(self, model_urn: str, group_urn: str) -> None:
        self._link((model_urn, "mlModel", "model_urn"), (group_urn, "mlModelGroup", "group_urn"),
                   "mlModelProperties", "groups")

    def add_run_to_experiment(self, run_urn: str, experiment_urn: str) -> None:
        _expect(run_urn, "dataProcessInstance", "run_urn")
        _expect(experiment_urn, "container", "experiment_urn")
        self._put(run_urn, "container", {"container": experiment_urn})  # a run has one experiment

    def add_run_to_model(self, model_urn: str, run_urn: str) -> None:
        self._link((model_urn, "mlModel", "model_urn"), (run_urn, "dataProcessInstance", "run_urn"),
                   "mlModelProperties", "trainingJobs")

    def add_run_to_model_group(self, model_group_urn: str, run_urn: str) -> None:
        self._link((model_group_urn, "mlModelGroup", "model_group_urn"), (run_urn, "dataProcessInstance", "run_urn"),
                   "mlModelGroupProperties", "trainingJobs")

    def add_input_datasets_to_run(self, run_urn: str, dataset_urns: Iterable[str]) -> None:
        self._add_edges(run_urn, "dataProcessInstanceInput", dataset_urns)

    def add_output_datasets_to_run(self, run_urn: str, dataset_urns: Iterable[str]) -> None:
        self._add_edges(run_urn, "dataProcessInstanceOutput", dataset_urns)

    def add_deployment_to_model(self, model_urn: str, deployment_urn: str) -> None:
        _expect(model_urn, "mlModel", "model_urn")
        _expect(deployment_urn, "mlModelDeployment", "deployment_urn")
        self._merge(model_urn, "mlModelProperties", {"deployments": [deployment_urn]})

    def set_deployment_status(self, deployment_urn: str, status: Union[DeploymentStatus, str]) -> None:
        _expect(deployment_urn, "mlModelDeployment", "deployment_urn")
        self._merge(deployment_urn, "mlModelDeploymentProperties",
                    {"status": DeploymentStatus(status).value})

    # -- ending --------------------------------------------------------------------
    def close(self) -> SinkResult:
        """Deliver everything; raises SinkError when anything was not delivered."""
        if self._closed:
            raise SinkError("client already closed")
        self._closed = True
        if self._reader is None:  # file sink: one final value per aspect, then the events
            for (urn, aspect_name), value in self._latest.items():
                self.sink.write(Mcp(urn, aspect_name, value), self._system_metadata())
            for event in self._events:
                self.sink.write(event, self._system_metadata())
        else:
            self._reader.close()
        result = self.sink.commit()
        if result.failed:
            raise SinkError(f"{result.failed} proposal(s) not delivered"
                            + (f" (see {result.dead_letter_file})" if result.dead_letter_file else "")
                            + "".join(f"\n  {m}" for m in result.messages[:5]))
        return result

    def abort(self) -> SinkResult:
        self._closed = True
        if self._reader is not None:
            self._reader.close()
        return self.sink.abort()

    def __enter__(self) -> "CatalogClient":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._closed:
            return
        if exc_type is None:
            self.close()
        else:
            self.abort()

    # -- internals -----------------------------------------------------------------
    def _system_metadata(self) -> dict:
        return {"lastObserved": _now(), "runId": self.run_id}

    def _current(self, urn: str, aspect_name: str) -> Optional[dict]:
        if (urn, aspect_name) in self._latest:
            return self._latest[(urn, aspect_name)]
        if self._reader is None:
            return None
        value = self._reader.get_aspect(urn, aspect_name)
        return normalise_restli(value) if value is not None else None

    def _put(self, urn: str, aspect_name: str, value: dict) -> None:
        if self._closed:
            raise SinkError("client already closed")
        self._latest[(urn, aspect_name)] = value
        if self._reader is not None:
            self.sink.write(Mcp(urn, aspect_name, value), self._system_metadata())

    def _refuse_blind_merge(self, urn: str, aspect_name: str) -> None:
        """File sink: the catalog's value cannot be read, and an UPSERT replaces the whole aspect."""
        if self._reader is None and urn not in self._created and (urn, aspect_name) not in self._latest:
            raise SinkError(
                f"{aspect_name} of {urn}: the file sink cannot read what the catalog holds, and writing this "
                "change alone would replace the whole aspect (an ingested model's params, metrics, groups, "
                "a run's outputs); link through the REST sink (type: datahub-rest), which reads the current "
                "aspect and merges, or create the entity with this client first")

    def _merge(self, urn: str, aspect_name: str, change: Optional[dict], defaults: Optional[dict] = None) -> None:
        self._refuse_blind_merge(urn, aspect_name)
        merged = merge_aspect(aspect_name, self._current(urn, aspect_name), change or {})
        for key, value in (defaults or {}).items():
            merged.setdefault(key, value)
        self._put(urn, aspect_name, merged)

    def _add_edges(self, run_urn: str, aspect_name: str, dataset_urns: Iterable[str]) -> None:
        _expect(run_urn, "dataProcessInstance", "run_urn")
        dataset_urns = list(dataset_urns)
        for urn in dataset_urns:
            _expect(urn, "dataset", "dataset_urns")
        self._refuse_blind_merge(run_urn, aspect_name)
        self._put(run_urn, aspect_name, add_edges(aspect_name, self._current(run_urn, aspect_name), dataset_urns))

    def _event(self, urn: str, event: dict) -> None:
        proposal = Mcp(urn, "dataProcessInstanceRunEvent", event)
        if self._reader is not None:
            self.sink.write(proposal, self._system_metadata())
        else:
            self._events.append(proposal)

    def _platform_and_status(self, urn: str) -> None:
        self._put(urn, "dataPlatformInstance", platform_instance_aspect(self.ctx))
        self._put(urn, "status", status())
