"""The settings step: a recipe turned, once, into the parts of one run (the source connection
and crawl settings, the mapping context, the change tracker and its state store, the sink, the
report and the run's options). connector/pipeline.py only wires these parts; nothing after this
step reads the recipe."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Optional

from connector.change_tracking.tracker import ChangeTracker, checkpoint_in_future, config_fingerprint
from connector.mapping.common import MappingContext
from connector.mapping.links import ForeignLinks
from connector.mapping.version import MAPPING_VERSION
from connector.config.recipe import DatahubRestSinkConfig, Recipe
from connector.report import Report
from connector.config.settings import (
    SourceConnection, build_sink, crawl_settings, mapping_context, open_state_store, source_connection, source_filters,
)
from connector.sinks.base import Sink
from connector.sinks.dry_run import DryRunSink
from connector.sinks.file import PLACEHOLDERS
from connector.sinks.rest import RestSink
from connector.source.crawl_records import CrawlSettings
from connector.state.store import StateError
from connector.state.store_protocol import StateStore
from connector.stopping import StopToken

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunOptions:
    """How this run goes, besides the recipe: the CLI's flags, or an integration's choice. `stop`
    ends this run's waits (SIGTERM in the CLI, Airflow's timeout, a stopped REST delivery) and
    no other run's."""
    dry_run: bool = False
    preview: Optional[int] = None  # stop after this many proposals
    progress_interval: float = 5.0
    resume: bool = False
    stop: StopToken = field(default_factory=StopToken)


@dataclass(frozen=True)
class RemovalPolicy:
    """The state section's say on stale entities."""
    remove_stale: bool
    max_removal_ratio: float
    allow_mass_removal: bool


@dataclass(frozen=True)
class ChangeTracking:
    """Change tracking of a recipe with a state section: the tracker, where its state is kept,
    under which pipeline name, and what it may remove."""
    tracker: ChangeTracker
    store: StateStore
    pipeline_name: str
    removal: RemovalPolicy


@dataclass(frozen=True)
class RunParts:
    connection: SourceConnection
    crawl: CrawlSettings
    ctx: MappingContext
    tracking: Optional[ChangeTracking]  # None: no state section (every run sends everything)
    sink: Sink
    report: Report
    options: RunOptions
    dead_letters_to_retire: Optional[str] = None  # the recipe's REST sink: its dead-letter file

    @property
    def tracker(self) -> Optional[ChangeTracker]:
        return self.tracking.tracker if self.tracking is not None else None

    @property
    def stop(self) -> StopToken:
        return self.options.stop

    @property
    def resumable(self) -> bool:
        """A stopped crawl can go on from its last page: everything before a page end is delivered."""
        tracker = self.tracker
        return (tracker is not None and tracker.mode in ("full", "resume") and self.sink.delivers_as_it_goes
                and not self.options.preview)


def run_parts(recipe: Recipe, report: Report, options: RunOptions, sink: Optional[Sink] = None) -> RunParts:
    """Every part of the run (`sink`: one the caller gives, else the recipe's). Raises StateError
    when the state cannot be read or used."""
    config = recipe.source.config
    ctx = mapping_context(config)
    tracking = _tracking(recipe, ctx, report, options)
    target: Sink = sink or (DryRunSink() if options.dry_run else build_sink(
        recipe.sink, report.run_id, recipe.pipeline_name, report.redactor, stop=options.stop))
    sink_config = recipe.sink.config
    retire = sink_config.dead_letter_file if sink is None and isinstance(sink_config, DatahubRestSinkConfig) else None
    if sink is None:
        _warn_about_replaced_files(recipe, tracking, report)
    report.sink = target.name
    if isinstance(target, RestSink):  # links the SDK added to the aspects ingestion writes whole are kept
        target.foreign_links = ForeignLinks(ctx.deployment_rules, ctx.env, ctx.platform_instance)
    return RunParts(connection=source_connection(config, options.stop), crawl=crawl_settings(config), ctx=ctx,
                    tracking=tracking, sink=target, report=report, options=options,
                    dead_letters_to_retire=retire)


def _warn_about_replaced_files(recipe: Recipe, tracking: Optional[ChangeTracking], report: Report) -> None:
    if tracking is None or not tracking.tracker.incremental or recipe.sink.type != "file":
        return
    if not any("{" + p + "}" in recipe.sink.config.filename for p in PLACEHOLDERS):
        report.warning("Incremental file output", f"{recipe.sink.config.filename} is replaced by each run with only "
                       "that run's changes and removals; put {timestamp} or {run_id} in the filename so that each "
                       "run keeps a file of its own")


def _tracking(recipe: Recipe, ctx: MappingContext, report: Report, options: RunOptions) -> Optional[ChangeTracking]:
    if recipe.state is None:
        report.mode = "full"
        return None
    if "type" in recipe.state.model_fields_set:  # accepted so that old recipes still load
        report.warning("Recipe", "state.type is ignored (kept for old recipes): the state store is chosen by "
                                 f"state.backend ({recipe.state.backend!r} here)")
    config = recipe.source.config
    pipeline_name = recipe.pipeline_name or ""
    resume = options.resume
    store = open_state_store(recipe.state, recipe.sink, options.stop)
    previous = store.load(pipeline_name)
    try:
        tracker = ChangeTracker.start(previous, config.incremental, config_fingerprint(ctx, source_filters(config)),
                                      config.incremental_lookback_sec, ctx, resume)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a damaged entry the shape checks let by
        raise StateError(f"{store.path}, pipeline {recipe.pipeline_name!r}: the checkpoint cannot be used ({exc}); "
                         "move it away (the next run is then a full crawl)") from None
    report.mode = tracker.mode
    if resume and tracker.mode != "resume":
        report.info("Nothing to resume", "no unfinished full crawl with these settings in the state; "
                                         f"running a {tracker.mode} crawl")
    report.checkpoint_before = previous.checkpoint or None
    if config.incremental and not tracker.incremental:
        report.info("Full crawl", f"{_why_full(previous)}: crawling everything once")
    state = recipe.state
    return ChangeTracking(tracker, store, pipeline_name,
                    RemovalPolicy(state.remove_stale, state.max_removal_ratio, state.allow_mass_removal))


def _why_full(previous) -> str:
    if checkpoint_in_future(previous, int(time.time() * 1000)):
        return "the checkpoint is in the future (a clock error, or a run dated ahead, saved by an older release)"
    if previous.has_checkpoint and previous.mapping_version != MAPPING_VERSION:
        why = (f"the connector's mapping changed (mapping version {previous.mapping_version} in the state, "
               f"{MAPPING_VERSION} now): every entity is sent again, mapped the new way")
        log.info("full crawl: %s", why)
        return why
    return "no usable checkpoint (first run, or mapping settings changed)"
