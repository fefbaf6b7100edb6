"""One ingestion run: crawl MLflow -> map each record -> hand proposals to the sink."""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Iterator, Optional

from connector.mapping.common import MappingContext, Mcp
from connector.mapping.records import (
    describe, entities_of, stage_tag_entities, version_entities, version_fingerprint, version_urn,
)
from connector.mapping.deployments import DeploymentRule
from connector.recipe import Recipe
from connector.report import Progress, Report
from connector.sinks import build_sink
from connector.sinks.base import SinkError, SinkResult
from connector.sinks.file import read_proposals
from connector.source.connect import external_base_url, open_backend
from connector.source.crawler import MlflowCrawler
from connector.source.records import (
    CrawlSettings, DeletedRunRecord, ExperimentRecord, ModelGroupRecord, RunRecord, RunsPageDone, VersionRecord,
)
from connector.source.errors import SourceError
from connector.source.http_backend import redact_url
from connector.state.lock import PipelineLock
from connector.state.store import StateError, StateFile
from connector.stateful import ChangeTracker, config_fingerprint

log = logging.getLogger(__name__)


def new_run_id(pipeline_name: Optional[str]) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y_%m_%d-%H_%M_%S")
    return f"{pipeline_name or 'mlflow'}-{stamp}-{uuid.uuid4().hex[:6]}"


def mapping_context(recipe: Recipe) -> MappingContext:
    config = recipe.source.config
    return MappingContext(
        env=config.env,
        platform_instance=config.platform_instance,
        model_name_separator=config.model_name_separator,
        base_external_url=external_base_url(config),
        dataset_platform_mapping={k.lower(): v for k, v in config.dataset_platform_mapping.items()},
        deployment_rules=tuple(
            DeploymentRule(platform=r.platform, name_template=r.name_template, alias=r.alias,
                           tag_key=r.tag.key if r.tag else None, tag_value=r.tag.value if r.tag else None,
                           env=r.env, status=r.status, description=r.description)
            for r in config.deployments),
        model_card_tag_prefix=config.model_card_tag_prefix,
        deprecation_tag=config.deprecation_tag,
        champion_alias=config.champion_alias,
    )


def crawl_settings(recipe: Recipe) -> CrawlSettings:
    config = recipe.source.config
    return CrawlSettings(
        include_experiments=config.include_experiments,
        include_runs=config.include_runs,
        include_deleted=config.include_deleted,
        include_logged_models=config.include_logged_models,
        include_signatures=config.include_signatures,
        runs_page_size=config.runs_page_size,
        max_workers=config.max_workers,
        experiment_allowed=config.experiment_pattern.allows,
        model_allowed=config.model_pattern.allows,
    )


class _NullSink:
    name = "dry-run"

    def write(self, proposal, system_metadata):
        pass

    def commit(self):
        return SinkResult()

    def abort(self):
        return SinkResult()


def run_ingest(recipe: Recipe, *, dry_run: bool = False, preview: Optional[int] = None,
               progress_interval: float = 5.0, resume: bool = False, sink=None) -> Report:
    """Crawl, map and deliver. Raises LockHeld when another run of this pipeline is going on.
    `sink`: deliver to this sink object instead of the recipe's (the `datahub ingest` plugin)."""
    config = recipe.source.config
    report = Report(pipeline_name=recipe.pipeline_name or "", dry_run=dry_run,
                    run_id=new_run_id(recipe.pipeline_name))
    report.source = redact_url(config.resolved_tracking_uri())
    ctx = mapping_context(recipe)
    lock = None
    if recipe.state is not None and not dry_run:
        lock = PipelineLock(recipe.state.path, recipe.pipeline_name)
        try:
            lock.acquire()
        except StateError as exc:
            report.failure("StateError", str(exc))
            report.finish()
            return report
    try:
        try:
            tracker, store = _start_tracker(recipe, ctx, report, resume)
        except StateError as exc:
            report.failure("StateError", str(exc))
            report.finish()
            return report
        sink = _NullSink() if dry_run else sink if sink is not None else build_sink(recipe.sink)
        report.sink = sink.name
        checkpoint = None
        if tracker is not None and tracker.mode in ("full", "resume") and hasattr(sink, "flush") and not preview:
            def checkpoint():  # everything so far is delivered: a stopped crawl can resume from here
                sink.flush()
                store.save(recipe.pipeline_name, tracker.with_progress(report.run_id))
        result = _crawl_and_deliver(recipe, ctx, tracker, sink, report, preview, progress_interval, checkpoint)
        record_sink_result(report, result)
        if tracker is not None:
            report.entities_removed = len(tracker.removed) if report.removals_emitted else 0
            if report.ok and not dry_run and not preview:
                new_state = tracker.new_state(report.run_id)
                try:
                    store.save(recipe.pipeline_name, new_state)
                    report.checkpoint_after = new_state.checkpoint
                except (StateError, OSError) as exc:
                    report.failure("State not saved", f"{recipe.state.path}: {exc}")
    finally:
        if lock is not None:
            lock.release()
    report.finish()
    return report


def _start_tracker(recipe: Recipe, ctx: MappingContext, report: Report, resume: bool):
    if recipe.state is None:
        report.mode = "full"
        return None, None
    config = recipe.source.config
    store = StateFile(recipe.state.path)
    previous = store.load(recipe.pipeline_name)
    filters = (config.model_pattern.model_dump_json(), config.experiment_pattern.model_dump_json(),
               config.include_experiments, config.include_runs, config.include_deleted,
               config.include_logged_models, config.include_signatures)
    tracker = ChangeTracker.start(previous, config.incremental, config_fingerprint(ctx, filters),
                                  config.incremental_lookback_sec, ctx, resume)
    report.mode = tracker.mode
    if resume and tracker.mode != "resume":
        report.info("Nothing to resume", "no unfinished full crawl with these settings in the state; "
                                         f"running a {tracker.mode} crawl")
    report.checkpoint_before = previous.checkpoint or None
    if config.incremental and not tracker.incremental:
        report.info("Full crawl", "no usable checkpoint (first run, or mapping settings changed): "
                                  "crawling everything once")
    return tracker, store


def _crawl_and_deliver(recipe, ctx, tracker, sink, report, preview, progress_interval,
                       checkpoint=None) -> SinkResult:
    progress = Progress(report, progress_interval)
    backend = None
    started = time.monotonic()
    try:
        backend = open_backend(recipe.source.config)
        crawler = MlflowCrawler(backend, crawl_settings(recipe), report)
        proposals = _proposals(recipe, ctx, crawler, tracker, report, progress, checkpoint)
        for count, proposal in enumerate(proposals, start=1):
            system_metadata = {"lastObserved": int(time.time() * 1000), "runId": report.run_id}
            report.proposal(proposal.entity_type, proposal.entity_urn, proposal.aspect_name)
            sink.write(proposal, system_metadata)
            if tracker is not None:
                tracker.observe(proposal)
            if preview and count >= preview:
                report.info("Preview", f"stopped after {preview} proposals (--preview)")
                break
        report.point_lookups = crawler.point_lookups
    except (SourceError, SinkError, StateError) as exc:
        report.failure(type(exc).__name__, str(exc))
        return sink.abort()
    except Exception as exc:  # a bug or an unforeseen answer: report it, lose nothing
        log.debug("ingest failed", exc_info=True)
        report.failure("Unexpected error", f"{type(exc).__name__}: {exc}")
        return sink.abort()
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM from a cron timeout (see cli.py)
        report.failure("Interrupted", "stopped before the end; nothing of this run's checkpoint was saved")
        return sink.abort()
    finally:
        if backend is not None:
            report.source_requests = backend.requests_made
            report.source_retries = getattr(backend, "retries_made", 0)
            backend.close()
    crawled = time.monotonic()
    report.crawl_sec = round(crawled - started, 3)
    try:
        result = sink.commit()
    except (SinkError, OSError) as exc:
        report.failure("Sink failed", str(exc))
        return sink.abort()
    finally:
        report.final_delivery_sec = round(time.monotonic() - crawled, 3)
    if hasattr(sink, "path"):
        report.output = str(sink.path)
    return result


def _proposals(recipe, ctx, crawler, tracker, report, progress, checkpoint=None) -> Iterator[Mcp]:
    """Every proposal of this run, in order: stage tags, experiments, runs, groups and versions,
    then removals. With a tracker, unchanged entities are left out of incremental runs. Each
    proposal yielded is in the sink before this generator goes on, so `checkpoint` (called after
    each page of runs) sees everything before it written."""
    seen_datasets: set[str] = set()
    pending_versions: list[VersionRecord] = []

    def wanted(entity) -> bool:
        return tracker is None or tracker.should_emit(entity)

    for entity in stage_tag_entities():
        if wanted(entity):
            yield from entity.proposals
    for record in crawler.crawl(tracker.plan() if tracker else None, resumable=checkpoint is not None):
        if isinstance(record, RunsPageDone):
            if tracker is not None:
                tracker.page_done(record)
            if checkpoint is not None and not report.failure_count:
                checkpoint()
            continue
        try:
            if isinstance(record, DeletedRunRecord):
                if tracker is not None:
                    tracker.deleted_run(record.run_id)
                continue
            if tracker is not None and isinstance(record, RunRecord):
                tracker.saw_run(record.run)
            if tracker is not None and isinstance(record, ExperimentRecord):
                tracker.saw_experiment(record.experiment)
            if tracker is not None and isinstance(record, ModelGroupRecord):
                tracker.saw_registry_update(record.model.last_updated_timestamp)
            if tracker is not None and isinstance(record, VersionRecord):
                urn = version_urn(ctx, record.version.name, record.version.version)
                if not tracker.version_needs_emit(urn, version_fingerprint(record), record.version.run_id):
                    continue
                if record.run_pending or (tracker.incremental and (
                        record.version.model_id or crawler.settings.include_signatures)):
                    pending_versions.append(record)  # completed in bulk at the end
                    continue
                batch = _version_proposals(ctx, record, record.run, tracker, seen_datasets)
            else:
                batch = [p for entity in entities_of(ctx, record, seen_datasets) if wanted(entity)
                         for p in entity.proposals]
        except Exception as exc:  # one bad record must not sink the run
            report.failure("Mapping failed", f"{describe(record)}: {type(exc).__name__}: {exc}")
            continue
        yield from batch
        progress.tick()
    if pending_versions:
        for record in crawler.complete_versions(pending_versions):
            yield from _version_proposals(ctx, record, record.run, tracker, seen_datasets)
    if tracker is not None:
        yield from _removals(recipe, tracker, report)
        if not report.failure_count:
            yield from tracker.clearing_proposals()


def _version_proposals(ctx, record, run, tracker, seen_shared) -> list[Mcp]:
    """A version the tracker decided to emit, and those of its deployments that changed."""
    version, *deployments = version_entities(ctx, record, run, seen_shared)
    return [*version.proposals, *(p for d in deployments if tracker.should_emit(d) for p in d.proposals)]


def _removals(recipe, tracker, report) -> Iterator[Mcp]:
    if report.failure_count:  # a crawl with failures cannot tell what is gone
        return
    tracker.finish_removals()
    if not recipe.state.remove_stale or not tracker.removed:
        return
    refusal = tracker.removal_refused(recipe.state.max_removal_ratio)
    if refusal:
        report.failure("Stale-entity removal refused", refusal)
        return
    report.removals_emitted = True
    yield from tracker.removal_proposals()


def record_sink_result(report: Report, result: SinkResult) -> None:
    report.delivered = result.delivered
    if result.dead_letter_file:
        report.dead_lettered = result.failed
        report.dead_letter_file = result.dead_letter_file
        for message in result.messages:
            report.failure("Not delivered", message)
        report.failure("Dead-lettered", f"{result.failed} proposal(s) not delivered are in "
                       f"{result.dead_letter_file}; re-send them with: mlflow-catalog send "
                       f"{result.dead_letter_file} -c RECIPE")
    else:
        for message in result.messages:
            report.info("Sink", message)


def _proposal_from_record(record: dict) -> tuple[Mcp, Optional[dict]]:
    aspect = record.get("aspect") or {}
    value = aspect["json"] if "json" in aspect else json.loads(aspect["value"])
    if not isinstance(value, dict):
        raise ValueError("aspect is not an object")
    return Mcp(record["entityUrn"], record["aspectName"], value), record.get("systemMetadata")


def run_send(recipe: Recipe, filename: str) -> Report:
    """Re-send a file of proposals (a dead-letter file, or a file sink's output) through the recipe's sink."""
    report = Report(pipeline_name=recipe.pipeline_name or "", run_id=new_run_id(recipe.pipeline_name),
                    source=filename)
    try:
        records = read_proposals(filename)
        pairs = []
        for index, record in enumerate(records):
            try:
                pairs.append(_proposal_from_record(record))
            except (KeyError, TypeError, ValueError) as exc:
                raise SinkError(f"record {index} is not a proposal ({type(exc).__name__}: {exc})") from None
    except (OSError, ValueError, SinkError) as exc:
        report.failure("Cannot read proposals", f"{filename}: {exc}")
        report.finish()
        return report
    sink = build_sink(recipe.sink)
    report.sink = sink.name
    dead_letters = getattr(sink, "dead_letters", None)
    if dead_letters is not None and dead_letters.path.exists() and os.path.samefile(dead_letters.path, filename):
        dead_letters.replace_existing = True  # sending the dead letters themselves: keep what stays undelivered
    sent = 0
    try:
        for proposal, system_metadata in pairs:
            system_metadata = system_metadata or {"lastObserved": int(time.time() * 1000), "runId": report.run_id}
            report.proposal(proposal.entity_type, proposal.entity_urn, proposal.aspect_name)
            sent += 1
            sink.write(proposal, system_metadata)
    except SinkError as exc:
        report.failure("SinkError", str(exc))
        for proposal, system_metadata in pairs[sent:]:  # nothing read is lost: the rest is dead-lettered too
            report.proposal(proposal.entity_type, proposal.entity_urn, proposal.aspect_name)
            if hasattr(sink, "dead_letter_unsent"):
                sink.dead_letter_unsent(proposal, system_metadata or {}, f"not sent: {exc}")
        result = sink.abort()
    else:
        result = sink.commit()
        if hasattr(sink, "path"):
            report.output = str(sink.path)
    record_sink_result(report, result)
    report.finish()
    return report
