"""One ingestion run: crawl MLflow -> for each record, the tracker selects -> mapping -> sink.

    source (crawl, records) -> tracking (select, with a state section) -> mapping -> sink (delivery)

The tracker decides on a version before it is mapped (from its registry data), on anything else
by the fingerprint of what mapping made of it (it calls the mapping it is handed).
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from functools import partial
from typing import Callable, Iterator, Optional

from connector import stopping
from connector.secrets import Redactor, redact_url
from connector.mapping.common import MappingContext, Mcp
from connector.mapping.links import ForeignLinks
from connector.mapping.urns import entity_type
from connector.mapping.version import MAPPING_VERSION
from connector.mapping.catalog_entities import MappedEntity, MappingMemory, describe, entities_of, stage_tag_entities
from connector.recipe import Recipe
from connector.report import Progress, Report, new_run_id, unforeseen
from connector.settings import (
    build_sink, crawl_settings, mapping_context, open_state_store, source_connection, source_filters,
)
from connector.sinks.dry_run import DryRunSink
from connector.sinks.base import Sink, SinkError, SinkResult
from connector.sinks.dead_letter import retire
from connector.sinks.file import PLACEHOLDERS
from connector.sinks.rest import RestSink
from connector.source.connect import open_backend
from connector.source.crawler import MlflowCrawler
from connector.source.errors import SourceError
from connector.source.crawl_records import FullPlan, RunsPageDone
from connector.state.store_protocol import StateStore
from connector.state.store import StateError
from connector.change_tracking.tracker import ChangeTracker, checkpoint_in_future, config_fingerprint

log = logging.getLogger(__name__)


class _CrawlEvents:
    """What the crawl tells besides records: counts and warnings to the report; page boundaries
    and deleted runs to the tracker; after each page of a resumable crawl, a checkpoint."""

    def __init__(self, report: Report, tracker: Optional[ChangeTracker], checkpoint: Optional[Callable[[], None]]):
        self.report = report
        self.tracker = tracker
        self.checkpoint = checkpoint

    def seen(self, kind: str, count: int = 1) -> None:
        self.report.seen(kind, count)

    def filter_out(self, kind: str, count: int) -> None:
        self.report.filter_out(kind, count)

    def warning(self, title: str, message: str) -> None:
        self.report.warning(title, message)

    def failure(self, title: str, message: str) -> None:
        self.report.failure(title, message)

    def info(self, title: str, message: str) -> None:
        self.report.info(title, message)

    def runs_page_done(self, page: RunsPageDone) -> None:
        if self.tracker is not None:
            self.tracker.runs_page_done(page)
        if self.checkpoint is not None and not self.report.failure_count:
            self.checkpoint()

    def run_deleted(self, run_id: str) -> None:
        if self.tracker is not None:
            self.tracker.run_deleted(run_id)

    def record_failed(self, what: str, problem: str) -> None:
        self.report.record_failed(what, f"{problem}; not delivered, the other records are")


def run_ingest(recipe: Recipe, *, dry_run: bool = False, preview: Optional[int] = None,
               progress_interval: float = 5.0, resume: bool = False, sink: Optional[Sink] = None) -> Report:
    """Crawl, map and deliver (to `sink`, else the recipe's). Raises LockHeld when another run of
    this pipeline is going on."""
    stopping.reset()
    config = recipe.source.config
    report = Report(pipeline_name=recipe.pipeline_name or "", dry_run=dry_run, run_id=new_run_id(recipe.pipeline_name),
                    redactor=Redactor.from_recipe(recipe))  # a secret a server echoes never reaches the report
    report.source = redact_url(config.resolved_tracking_uri())
    lock = None
    try:
        if recipe.state is not None and not dry_run:
            from connector.state.lock import PipelineLock  # fcntl: only where the lock is taken

            lock = PipelineLock(recipe.state.path, recipe.pipeline_name or "")
            lock.acquire()
        _ingest(recipe, report, dry_run, preview, progress_interval, resume, sink)
    except StateError as exc:
        report.failure("StateError", str(exc))
    except (KeyboardInterrupt, stopping.Stopped):
        report.failure("Interrupted", "stopped before the end; nothing of this run's checkpoint was saved")
    finally:
        if lock is not None:
            lock.release()
    report.finish()
    return report


def _keep_foreign_links(target: Sink, ctx: MappingContext) -> None:
    """Links the SDK added to the aspects ingestion writes whole are kept (the REST sink reads them)."""
    if isinstance(target, RestSink):
        target.foreign_links = ForeignLinks(ctx.deployment_rules, ctx.env, ctx.platform_instance)


def _ingest(recipe: Recipe, report: Report, dry_run: bool, preview: Optional[int], progress_interval: float,
            resume: bool, sink: Optional[Sink]) -> None:
    ctx = mapping_context(recipe.source.config)
    tracker, store = _start_tracker(recipe, ctx, report, resume)
    target: Sink = sink or (DryRunSink() if dry_run else build_sink(recipe.sink, report.run_id, recipe.pipeline_name,
                                                                 report.redactor))
    if sink is None:  # the recipe's own sink
        _warn_about_replaced_files(recipe, tracker, report)
    report.sink = target.name
    _keep_foreign_links(target, ctx)
    checkpoint = None
    if tracker is not None and tracker.mode in ("full", "resume") and target.delivers_as_it_goes and not preview:
        def checkpoint():  # everything so far is delivered: a stopped crawl can resume from here
            target.flush()
            store.save(recipe.pipeline_name or "", tracker.with_progress(report.run_id))
    result = _crawl_and_deliver(recipe, ctx, tracker, target, report, preview, progress_interval, checkpoint)
    went_through = report.ok  # crawled, mapped and handed to the sink without a failure
    report.sink_result(result)
    if tracker is not None:
        report.entities_removed = len(tracker.removals) if report.removals_emitted else 0
    if dry_run or preview:
        return
    if report.ok:
        _after_a_good_run(recipe, tracker, store, report, own_sink=sink is None)
    elif tracker is not None:
        _after_a_failed_run(recipe, tracker, store, report, result.only_refused if went_through else None,
                            target.delivers_as_it_goes)


def _after_a_failed_run(recipe: Recipe, tracker: ChangeTracker, store, report: Report,
                        refused: Optional[frozenset], delivered_as_it_went: bool) -> None:
    """`refused`: the run went through, and the only proposals not delivered were refused for good."""
    if refused:
        _checkpoint_despite_refusals(recipe, store, tracker, report, refused)
    elif delivered_as_it_went and tracker.incremental and tracker.touched:
        _remember_partial_delivery(recipe, store, tracker, report)


def _checkpoint_despite_refusals(recipe: Recipe, store, tracker: ChangeTracker, report: Report,
                                 refused: frozenset) -> None:
    """A proposal the catalog refuses for good must not hold every later run back, whatever its
    kind: it is in the dead letters, and the checkpoint moves on without the refused entities
    (and the runs or versions that made them), which the next run reads and sends again."""
    _save_state(recipe, store, tracker, report, not_delivered=refused)
    removals = sum(1 for urn in tracker.removals if urn in refused)
    report.resend_next_run = len(refused)
    report.info("Checkpoint saved", f"without the {len(refused)} entities the catalog refused ("
                + ", ".join(f"{kind}={n}" for kind, n in _kinds(refused)) + "; they are in the dead letters"
                + (f"; {removals} of them removals, kept pending" if removals else "")
                + "): the next run sends them again; the rest is not sent again")


def _kinds(refused: frozenset) -> list[tuple[str, int]]:
    return sorted(Counter(entity_type(urn) for urn in refused).items())


def _remember_partial_delivery(recipe: Recipe, store, tracker: ChangeTracker, report: Report) -> None:
    """A failed incremental run delivered some of its proposals: the catalog may hold values that
    MLflow reverts before the next run, which would then see nothing changed. The checkpoint does
    not move, but the entities this run sent are marked for the next run to send again."""
    try:
        store.save(recipe.pipeline_name or "", tracker.with_partial_delivery())
    except (StateError, OSError) as exc:
        report.warning("State not saved", f"{store.path}: {exc}; the entities this failed run sent may not be "
                       "re-sent by the next incremental run (run once with --full to be sure)")
        return
    report.resend_next_run = tracker.touched
    report.info("Marked for re-sending", f"this failed run sent (or tried to send) {tracker.touched} entities; "
                "the checkpoint did not move and the next run sends them again")


def _after_a_good_run(recipe: Recipe, tracker: Optional[ChangeTracker], store, report: Report,
                      own_sink: bool) -> None:
    if tracker is not None:
        _save_state(recipe, store, tracker, report)
    if own_sink and report.ok and recipe.sink.type == "datahub-rest":
        _retire_dead_letters(recipe.sink.config.dead_letter_file, report)


def _retire_dead_letters(filename: str, report: Report) -> None:
    """A good run sent everything that changed since the last good one: older dead letters are
    out of date (re-sending one could overwrite a newer value), so they are moved aside."""
    try:
        superseded = retire(filename)
    except OSError as exc:
        report.warning("Dead letters not retired", f"{filename}: {exc.strerror or exc}; do not re-send them: "
                       "this run sent what changed since the last good run")
        return
    if superseded:
        report.info("Dead letters superseded", f"this run sent everything that changed since the last good run: "
                    f"the older dead letters are out of date, moved to {superseded} (do not re-send them)")


def _warn_about_replaced_files(recipe: Recipe, tracker: Optional[ChangeTracker], report: Report) -> None:
    if tracker is None or not tracker.incremental or recipe.sink.type != "file":
        return
    if not any("{" + p + "}" in recipe.sink.config.filename for p in PLACEHOLDERS):
        report.warning("Incremental file output", f"{recipe.sink.config.filename} is replaced by each run with only "
                       "that run's changes and removals; put {timestamp} or {run_id} in the filename so that each "
                       "run keeps a file of its own")


def _save_state(recipe: Recipe, store: StateStore, tracker: ChangeTracker, report: Report,
                not_delivered: frozenset = frozenset()) -> None:
    new_state = tracker.new_state(report.run_id, not_delivered)
    try:
        store.save(recipe.pipeline_name or "", new_state)
        report.checkpoint_after = new_state.checkpoint
    except (StateError, OSError) as exc:
        report.failure("State not saved", f"{store.path}: {exc}")


def _start_tracker(recipe: Recipe, ctx: MappingContext, report: Report, resume: bool):
    if recipe.state is None:
        report.mode = "full"
        return None, None
    config = recipe.source.config
    store = open_state_store(recipe.state, recipe.sink)
    previous = store.load(recipe.pipeline_name or "")
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
    return tracker, store


def _why_full(previous) -> str:
    if checkpoint_in_future(previous, int(time.time() * 1000)):
        return "the checkpoint is in the future (a clock error, or a run dated ahead, saved by an older release)"
    if previous.has_checkpoint and previous.mapping_version != MAPPING_VERSION:
        why = (f"the connector's mapping changed (mapping version {previous.mapping_version} in the state, "
               f"{MAPPING_VERSION} now): every entity is sent again, mapped the new way")
        log.info("full crawl: %s", why)
        return why
    return "no usable checkpoint (first run, or mapping settings changed)"


def _crawl_and_deliver(recipe, ctx, tracker, sink, report, preview, progress_interval, checkpoint) -> SinkResult:
    started = time.monotonic()
    backend = None
    try:
        backend = open_backend(source_connection(recipe.source.config))
        with MlflowCrawler(backend, crawl_settings(recipe.source.config),
                           _CrawlEvents(report, tracker, checkpoint)) as crawler:
            _deliver(_proposals(recipe, ctx, crawler, tracker, report, progress_interval, checkpoint is not None),
                     sink, report, preview)
            report.point_lookups = crawler.point_lookups
    except (SourceError, SinkError, StateError) as exc:
        report.failure("StateError" if isinstance(exc, StateError) else type(exc).__name__, str(exc))
        return sink.abort()
    except (KeyboardInterrupt, stopping.Stopped):  # Ctrl-C, or SIGTERM from a cron timeout (see cli.py)
        report.failure("Interrupted", "stopped before the end; nothing of this run's checkpoint was saved")
        return sink.abort()
    except Exception as exc:  # a bug or an unforeseen answer: report it, lose nothing
        log.debug("ingest failed", exc_info=True)
        report.failure("Unexpected error", unforeseen(exc))
        return sink.abort()
    finally:
        if backend is not None:
            report.source_requests = backend.requests_made
            report.source_retries = backend.retries_made
            backend.close()
    crawled = time.monotonic()
    report.crawl_sec = round(crawled - started, 3)
    try:
        return _end_delivery(sink, report)
    finally:
        report.final_delivery_sec = round(time.monotonic() - crawled, 3)


def _end_delivery(sink: Sink, report: Report) -> SinkResult:
    """Commit only a run that went well: a failed run never replaces the sink's previous output
    (a REST sink still delivers, or dead-letters, what it was given: nothing is lost)."""
    if report.failure_count:
        return sink.abort()
    try:
        result = sink.commit()
    except (SinkError, OSError) as exc:
        report.failure("Sink failed", str(exc))
        return sink.abort()
    except (KeyboardInterrupt, stopping.Stopped):
        report.failure("Interrupted", "stopped during the final delivery; what was not delivered is dead-lettered")
        return sink.abort()
    if stopping.requested():  # the REST sink ends its delivery on a stop itself: still a stopped run
        report.failure("Interrupted", "stopped during the final delivery; what was not delivered is "
                                      "dead-lettered, and this run's checkpoint is not saved")
        return result
    report.output = sink.output
    return result


def _deliver(proposals: Iterator[Mcp], sink, report: Report, preview: Optional[int]) -> None:
    for count, proposal in enumerate(proposals, start=1):
        system_metadata = {"lastObserved": int(time.time() * 1000), "runId": report.run_id}
        report.proposal(proposal.entity_type, proposal.entity_urn, proposal.aspect_name)
        sink.write(proposal, system_metadata)
        if preview and count >= preview:
            report.info("Preview", f"stopped after {preview} proposals (--preview)")
            break


def _select(tracker: Optional[ChangeTracker], record, entities: Callable[[], Iterator[MappedEntity]]):
    return list(entities()) if tracker is None else tracker.select(record, entities)


def _proposals(recipe, ctx, crawler, tracker, report, progress_interval, resumable) -> Iterator[Mcp]:
    """Every proposal of this run, in order: stage tags, experiments, runs, groups and versions,
    then removals. With a tracker, unchanged entities are left out of incremental runs. Each
    proposal yielded is in the sink before this generator goes on, so a checkpoint (after each
    page of runs) sees everything before it written."""
    progress = Progress(report, progress_interval)
    listing = crawler.list_mlflow()
    plan = tracker.plan(listing, resumable) if tracker is not None else FullPlan()
    memory = MappingMemory()  # shared entities emitted so far, and the mapping's warnings
    for entity in _select(tracker, None, stage_tag_entities):
        yield from entity.proposals
    for record in crawler.crawl(listing, plan):
        try:
            chosen = _select(tracker, record, partial(entities_of, ctx, record, memory))
        except Exception as exc:  # one bad record must not sink the run
            memory.forget_pending()
            report.record_failed(describe(record), f"{type(exc).__name__}: {exc}", title="Mapping failed")
            continue
        memory.settle()
        for title, message in memory.take_warnings():
            report.warning(title, message)
        for entity in chosen:
            yield from entity.proposals
        progress.tick()
    if tracker is not None:
        yield from _removals(recipe, tracker, report)
        if not report.failure_count:
            yield from tracker.clearing_proposals()


def _removals(recipe, tracker: ChangeTracker, report: Report) -> Iterator[Mcp]:
    if report.failure_count:  # a crawl with failures cannot tell what is gone
        return
    tracker.finish_removals()
    if not recipe.state.remove_stale or not tracker.removals:
        return
    if tracker.removed:
        refusal = tracker.removal_refused(recipe.state.max_removal_ratio)
        if refusal and not recipe.state.allow_mass_removal:
            report.failure("Stale-entity removal refused", refusal)
            return
        if refusal:
            report.info("Mass removal confirmed", f"--allow-mass-removal: removing {len(tracker.removed)} "
                        f"entities although {refusal.split(';')[0]}")
    report.removals_emitted = True
    yield from tracker.removal_proposals()
