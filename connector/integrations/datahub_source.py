"""`datahub ingest` source plugin: `source: {type: mlflow-catalog, config: {...}}`.

The config is our recipe's `source.config` model (every key, same meaning) plus `state`, our
recipe's `state` section. The work units are exactly the proposals our pipeline produces:
`run_ingest` runs in a worker thread and hands them over a bounded queue (proposal_queue.py); DataHub's
own work-unit processors that would add aspects (status, browse paths, ...) are switched off.
Our state is staged and saved only in DataHub's commit step, and only once DataHub's sink has
delivered the run: at once for sinks that confirm delivery by then, else as a pending state the
next run confirms (datahub_delivery.py, deferred_checkpoint.py).

Why our `state` and not DataHub's `stateful_ingestion`: an incremental run emits only what
changed, and DataHub's stale-entity removal treats every URN a run does not emit as gone; our
state also keeps what incremental runs need (fingerprints of what was sent, runs still open,
the mapping settings' hash) and the per-kind safety threshold, and it works with every sink
(file, datahub-lite, Kafka), not only with a DataHub server to keep checkpoints in.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Iterable, Optional

from datahub.configuration.common import ConfigurationError
from datahub.emitter.aspect import TIMESERIES_ASPECT_MAP
from datahub.emitter.mcp import MetadataChangeProposalWrapper
from datahub.emitter.serialization_helper import post_json_transform
from datahub.ingestion.api.committable import CommitPolicy, Committable
from datahub.ingestion.api.common import PipelineContext
from datahub.ingestion.api.decorators import SupportStatus, capability, config_class, platform_name, support_status
from datahub.ingestion.api.source import Source, SourceCapability
from datahub.ingestion.api.workunit import MetadataWorkUnit
from datahub.ingestion.workunit_processors import AutoWorkunitsReporterProcessor
from datahub.metadata.schema_classes import (
    ASPECT_NAME_MAP, SystemMetadataClass,
)
from pydantic import Field, ValidationError

from connector.integrations.datahub_mcp import FastToObjMcp
from connector.integrations.datahub_delivery import AT_COMMIT, NONE, DeliveryLedger, delivery_kind, undelivered
from connector.integrations.datahub_report import MlflowCatalogSourceReport
from connector.integrations.datahub_secrets import raw_source_config, refuse_passwords_in_urls, register_secrets
from connector.integrations.datahub_stateful import state_from_stateful_ingestion
from connector.integrations.proposal_queue import ProposalQueue
from connector.integrations.deferred_checkpoint import DeferredCheckpoint
from connector.mapping.common import Mcp
from connector.pipeline import run_ingest
from connector.secrets import Redactor
from connector.config.recipe import (
    FileSink, FileSinkConfig, MlflowSource, MlflowSourceConfig, Recipe, RecipeError, StateConfig, error_location,
)
from connector.state.lock import LockHeld
from connector.state.store import StateError

CONFIG_PATH = ("source", "config")


class MlflowCatalogSourceConfig(MlflowSourceConfig):
    """Every key of our recipe's `source.config`, plus `state` (our recipe's `state` section)."""

    state: Optional[StateConfig] = Field(
        None, description="incremental runs, stale-entity removal and the safety threshold "
                          "(path, remove_stale, max_removal_ratio); keyed by the recipe's pipeline_name")


def parse_config(config_dict: dict, pipeline_name: Optional[str],
                 graph=None) -> tuple[MlflowCatalogSourceConfig, Recipe]:
    """The plugin's config and the recipe `run_ingest` runs; ConfigurationError names the field.
    `graph`: the pipeline's DataHub client, where DataHub's `stateful_ingestion` keeps its checkpoint."""
    config_dict = dict(config_dict)
    stateful = state_from_stateful_ingestion(config_dict.pop("stateful_ingestion", None), graph)
    if stateful is not None:
        if config_dict.get("state") is not None:
            raise ConfigurationError("source.config.stateful_ingestion: give it or source.config.state, not both")
        config_dict["state"] = stateful
    try:
        config = MlflowCatalogSourceConfig.model_validate(config_dict)
    except ValidationError as exc:
        raise ConfigurationError("invalid mlflow-catalog config:\n  " + "\n  ".join(
            f"{error_location(CONFIG_PATH + tuple(e['loc']))}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors())) from None
    if config.state is not None and not pipeline_name:
        raise ConfigurationError("pipeline_name: required when source.config.state is set (it keys the checkpoint)")
    if config.incremental and config.state is None:
        raise ConfigurationError("source.config.incremental: needs source.config.state to keep the checkpoint in")
    try:
        config.resolved_tracking_uri()
    except RecipeError as exc:
        raise ConfigurationError(str(exc)) from None
    # The sink section is never used (run_ingest gets the queue sink); a Recipe needs one.
    recipe = Recipe(pipeline_name=pipeline_name, source=MlflowSource(type="mlflow", config=config),
                    sink=FileSink(type="file", config=FileSinkConfig(filename=os.devnull)), state=config.state)
    return config, recipe


def raw_workunit(proposal: Mcp, system_metadata: dict) -> MetadataWorkUnit:
    """Our proposal as a raw MCP, its aspect our JSON verbatim: what DataHub's REST, Kafka and file
    sinks take, at a fraction of the typed form's cost (no schema read, no schema validation). The
    entity type is interned: DataHub's file sink keeps every record until it closes."""
    mcp = FastToObjMcp.json_upsert(sys.intern(proposal.entity_type), proposal.entity_urn, proposal.aspect_name,
                                   json.dumps(proposal.aspect).encode(), system_metadata)
    timestamp = proposal.aspect.get("timestampMillis") if proposal.aspect_name in TIMESERIES_ASPECT_MAP else None
    suffix = f"-{timestamp}" if timestamp is not None else ""
    return MetadataWorkUnit(id=f"{proposal.entity_urn}-{proposal.aspect_name}{suffix}", mcp_raw=mcp)


def typed_workunit(proposal: Mcp, system_metadata: dict) -> MetadataWorkUnit:
    """Our proposal as DataHub's typed MCP (what transformers and the datahub-lite sink need): the
    aspect read the way DataHub reads our file sink's records (`post_json_transform`, then its class)."""
    aspect_class = ASPECT_NAME_MAP.get(proposal.aspect_name)
    if aspect_class is None:  # an aspect this acryl-datahub does not know
        return raw_workunit(proposal, system_metadata)
    return _typed(proposal, system_metadata, aspect_class)


def typed_only_workunit(proposal: Mcp, system_metadata: dict) -> MetadataWorkUnit:
    """For the datahub-lite sink, which drops a raw MCP with only a warning (no failure, so the
    checkpoint would pass it): an aspect this acryl-datahub does not know is refused here instead."""
    aspect_class = ASPECT_NAME_MAP.get(proposal.aspect_name)
    if aspect_class is None:
        raise ValueError(f"aspect {proposal.aspect_name} is unknown to this acryl-datahub (datahub-lite takes "
                         "typed proposals only)")
    return _typed(proposal, system_metadata, aspect_class)


def _typed(proposal: Mcp, system_metadata: dict, aspect_class) -> MetadataWorkUnit:
    return MetadataChangeProposalWrapper(
        entityType=proposal.entity_type, entityUrn=proposal.entity_urn, aspectName=proposal.aspect_name,
        aspect=aspect_class.from_obj(post_json_transform(proposal.aspect)),
        systemMetadata=SystemMetadataClass(**system_metadata),
    ).as_workunit()


def needs_typed_workunits(pipeline_config) -> bool:
    """Transformers look into typed aspects only, and the datahub-lite sink takes typed MCPs only."""
    if pipeline_config is None:
        return True
    sink_type = pipeline_config.sink.type if pipeline_config.sink else None
    return bool(pipeline_config.transformers) or sink_type == "datahub-lite"


class _SaveState(Committable):
    """Run by DataHub after its sink flushed, and only when no failure was reported."""

    def __init__(self, source: "MlflowCatalogSource"):
        super().__init__(name="mlflow-catalog-state", commit_policy=CommitPolicy.ON_NO_ERRORS)
        self.source = source

    def commit(self) -> None:
        self.source.save_state()


# A community plugin: acryl-datahub 1.7.0 calls that TESTING, later 1.7.0.x ALPHA.
_SUPPORT = SupportStatus["ALPHA" if "ALPHA" in SupportStatus.__members__ else "TESTING"]


_UNCONFIRMED_HINT = (". Until a run's output is found where it was written (the file sink's file, left in place "
                     "until the next run) or read back (GMS), every run is a full crawl and removes nothing; "
                     "the Kafka or datahub-lite sink confirms at once")


@platform_name("MLflow", id="mlflow")
@config_class(MlflowCatalogSourceConfig)
@support_status(_SUPPORT)
@capability(SourceCapability.DESCRIPTIONS, "Registered models, versions, experiments and runs")
@capability(SourceCapability.CONTAINERS, "Experiments, as containers of their runs")
@capability(SourceCapability.TAGS, "MLflow tags as tags and custom properties")
@capability(SourceCapability.OWNERSHIP, "Creators of models, versions and runs")
@capability(SourceCapability.PLATFORM_INSTANCE, "source.config.platform_instance")
@capability(SourceCapability.LINEAGE_COARSE, "Model versions to training runs, runs to input datasets")
@capability(SourceCapability.SCHEMA_METADATA, "Columns of logged datasets")
@capability(SourceCapability.DELETION_DETECTION, "With source.config.state (remove_stale)")
class MlflowCatalogSource(Source):
    """MLflow tracking server and model registry, through mlflow-catalog-connector's crawler and mapping."""

    def __init__(self, ctx: PipelineContext, config: MlflowCatalogSourceConfig, recipe: Recipe):
        super().__init__(ctx)
        self.config = config
        self.recipe = recipe
        self.report = MlflowCatalogSourceReport()
        redactor = Redactor.from_recipe(recipe)  # no secret in DataHub's report, log or stored run summary
        self.report.use_redactor(redactor)
        register_secrets(redactor)
        self.report.state_file = config.state.path if config.state else None
        # A run that finds nothing changed is not a mistake worth DataHub's "no metadata" warning.
        self.report.event_not_produced_warn = not config.incremental
        self._queue: Optional[ProposalQueue] = None
        self._staged: Optional[DeferredCheckpoint] = None
        self._finished = False
        # the evidence a pending checkpoint is confirmed with is only kept when there is a state
        self._ledger = DeliveryLedger(delivery_kind(ctx.pipeline_config) if config.state is not None else NONE)
        if config.state is not None:
            ctx.register_checkpointer(_SaveState(self))

    @classmethod
    def create(cls, config_dict: dict, ctx: PipelineContext) -> "MlflowCatalogSource":
        refuse_passwords_in_urls(raw_source_config(ctx, config_dict))
        config, recipe = parse_config(config_dict, ctx.pipeline_name, ctx.graph)
        return cls(ctx, config, recipe)

    def get_report(self) -> MlflowCatalogSourceReport:
        return self.report

    def get_allowed_workunit_processors(self):
        # Only counting: the others add or rewrite aspects, and the work units must be our proposals.
        return [AutoWorkunitsReporterProcessor]

    def get_workunits_internal(self) -> Iterable[MetadataWorkUnit]:
        recipe = self.recipe
        if recipe.state is not None:
            self._staged = DeferredCheckpoint(recipe.state, recipe.pipeline_name or "")
            try:
                self._staged.begin(lambda evidence: undelivered(evidence, self.ctx.graph))
            except (LockHeld, StateError) as exc:
                self.report.failure("Pipeline not run", context=str(exc), title="Pipeline not run")
                return
            if self._staged.pending_outcome and self._staged.confirmed is None:
                # unconfirmed every time (e.g. a file moved away before the next run): incremental
                # runs and removals would never happen, so say it where DataHub shows it
                self.report.warning("Previous run", context=self._staged.pending_outcome + _UNCONFIRMED_HINT,
                                    title="Checkpoint not confirmed")
            elif self._staged.pending_outcome:
                self.report.info("Previous run", context=self._staged.pending_outcome, log=False)
            self.report.checkpoint_confirmed = self._staged.confirmed
            recipe = recipe.model_copy(update={"state": self._staged.staged_config})
        to_workunit = typed_workunit if needs_typed_workunits(self.ctx.pipeline_config) else raw_workunit
        sink_section = self.ctx.pipeline_config.sink if self.ctx.pipeline_config else None
        if sink_section is not None and sink_section.type == "datahub-lite":
            to_workunit = typed_only_workunit

        def convert(proposal: Mcp, system_metadata: dict) -> MetadataWorkUnit:
            workunit = to_workunit(proposal, system_metadata)
            self._ledger.note(proposal)
            return workunit

        self._queue = ProposalQueue(
            lambda sink: run_ingest(recipe, sink=sink, progress_interval=float("inf")), convert)
        self._queue.start()
        try:
            yield from self._queue.items()
        finally:
            self._end_crawl()

    def _end_crawl(self) -> None:
        """Stop the crawl if DataHub stopped consuming, then take its report over (once)."""
        if self._finished or self._queue is None:
            return
        self._finished = True
        queue = self._queue
        queue.stop()
        if self._staged is not None:
            self._staged.end_crawl()
        if not queue.finished:
            self.report.info("Stopped early", context="DataHub stopped taking work units before the end of "
                             "the crawl (preview or an error downstream); no state is saved", log=False)
            return
        if queue.report is not None:
            self.report.absorb(queue.report)
        if queue.error is not None:
            self.report.failure("Unexpected error", context=f"{type(queue.error).__name__}: {queue.error}",
                                exc=queue.error)
        for reason in queue.sink.rejections:
            self.report.failure("Proposal not readable by DataHub", context=reason)

    def save_state(self) -> None:
        """DataHub's commit step (after its sink's flush(), no failure reported): save our staged
        state, or keep it pending when DataHub's sink delivers only after this step."""
        staged = self._staged
        if staged is None or not self._queue or not self._queue.finished:
            return
        try:
            if self.ctx.dry_run_mode or self.ctx.preview_mode:
                self.report.info("State not saved", context="dry run or preview", log=False)
                return
            kind = self._ledger.kind
            if kind == NONE:
                self.report.warning("State not saved", context="DataHub's sink gives no way to know it delivered "
                                    "(no flush()); every run sends the changes since the last saved checkpoint")
                return
            if kind == AT_COMMIT:
                self.report.checkpoint_saved = staged.promote()
                return
            evidence = self._ledger.evidence(self.ctx.pipeline_config, self.ctx.run_id, self.ctx.graph)
            self.report.checkpoint_pending = staged.promote(pending_evidence=evidence)
            if self.report.checkpoint_pending is not None:
                self.report.info("Checkpoint pending", context=f"DataHub's {kind} sink delivers after the commit "
                                 "step; the next run saves this checkpoint once it finds the run delivered",
                                 log=False)
        except (StateError, OSError) as exc:
            self.report.failure("State not saved", context=str(exc))
        finally:
            staged.discard()

    def close(self) -> None:
        self._end_crawl()
        super().close()
