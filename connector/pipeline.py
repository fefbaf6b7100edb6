"""One ingestion run, wired from the parts the settings step made (run_parts.py):

    crawl (records and markers) -> tracker observes -> mapping -> tracker selects -> sink
    a page-end marker -> a checkpoint the delivery loop takes; at the end removals and the state

The tracker only observes: it says a version is not worth mapping when its registry data did not
change, and selects the mapped entities whose fingerprint changed; nothing calls into it from the
crawl, and it never calls the mapping.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Iterator, Optional, Union

from connector.stopping import Stopped
from connector.secrets import Redactor, redact_url
from connector.mapping.common import Mcp
from connector.mapping.urns import entity_type
from connector.mapping.catalog_entities import MappedEntity, MappingMemory, describe, entities_of, stage_tag_entities
from connector.config.recipe import Recipe
from connector.report import Progress, Report, new_run_id, unforeseen
from connector.run_parts import RunOptions, RunParts, ChangeTracking, run_parts
from connector.sinks.base import Sink, SinkError, SinkResult
from connector.sinks.dead_letter import retire
from connector.sinks.rest import RestSink
from connector.source.connect import open_backend
from connector.source.crawler import MlflowCrawler
from connector.source.errors import SourceError
from connector.source.crawl_records import MARKER_TYPES, FullPlan, RunsPageEnd
from connector.state.store import StateError

log = logging.getLogger(__name__)


class _CrawlEvents:
    """What the crawl tells besides records and markers: counts, warnings and failed records, for
    the report."""

    def __init__(self, report: Report):
        self.report = report

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

    def record_failed(self, what: str, problem: str) -> None:
        self.report.record_failed(what, f"{problem}; not delivered, the other records are")


class _CheckpointDue:
    """In the stream of proposals: a point where every proposal before it may be delivered and
    the crawl's progress saved (the end of a page of runs in a resumable crawl)."""


CHECKPOINT_DUE = _CheckpointDue()


def run_ingest(recipe: Recipe, options: Optional[RunOptions] = None, *, sink: Optional[Sink] = None,
               **flags: Any) -> Report:
    """Crawl, map and deliver (to `sink`, else the recipe's). `options` (or its fields as keywords:
    dry_run, preview, progress_interval, resume, stop) say how; `stop` is this run's StopToken.
    Raises LockHeld when another run of this pipeline is going on."""
    options = options or RunOptions(**flags)
    report = Report(pipeline_name=recipe.pipeline_name or "", dry_run=options.dry_run,
                    run_id=new_run_id(recipe.pipeline_name),
                    redactor=Redactor.from_recipe(recipe))  # a secret a server echoes never reaches the report
    report.source = redact_url(recipe.source.config.resolved_tracking_uri())
    lock = None
    try:
        if recipe.state is not None and not options.dry_run:
            from connector.state.lock import PipelineLock  # fcntl: only where the lock is taken

            lock = PipelineLock(recipe.state.path, recipe.pipeline_name or "")
            lock.acquire()
        _ingest(run_parts(recipe, report, options, sink))
    except StateError as exc:
        report.failure(_title(exc), str(exc))
    except (KeyboardInterrupt, Stopped):
        report.failure("Interrupted", "stopped before the end; nothing of this run's checkpoint was saved")
    finally:
        if lock is not None:
            lock.release()
    report.finish()
    return report


def _title(exc: Exception) -> str:
    """A failure's title in the report says which part failed; its message says what and where."""
    if isinstance(exc, StateError):
        return "State store failed"
    if isinstance(exc, SourceError):
        return "MLflow source failed"
    return "Sink failed"


def _ingest(parts: RunParts) -> None:
    report, tracking = parts.report, parts.tracking
    result = _crawl_and_deliver(parts)
    went_through = report.ok  # crawled, mapped and handed to the sink without a failure
    report.sink_result(result)
    if tracking is not None:
        report.entities_removed = len(tracking.tracker.removals) if report.removals_emitted else 0
    if parts.options.dry_run or parts.options.preview:
        return
    if report.ok:
        _after_a_good_run(parts)
    elif tracking is not None:
        _after_a_failed_run(tracking, report, result.only_refused if went_through else None,
                            parts.sink.delivers_as_it_goes)


def _after_a_failed_run(tracking: ChangeTracking, report: Report, refused: Optional[frozenset],
                        delivered_as_it_went: bool) -> None:
    """`refused`: the run went through, and the only proposals not delivered were refused for good."""
    tracker = tracking.tracker
    if refused:
        _checkpoint_despite_refusals(tracking, report, refused)
    elif delivered_as_it_went and tracker.incremental and tracker.touched:
        _remember_partial_delivery(tracking, report)


def _checkpoint_despite_refusals(tracking: ChangeTracking, report: Report, refused: frozenset) -> None:
    """A proposal the catalog refuses for good must not hold every later run back, whatever its
    kind: it is in the dead letters, and the checkpoint moves on without the refused entities
    (and the runs or versions that made them), which the next run reads and sends again."""
    _save_state(tracking, report, not_delivered=refused)
    removals = sum(1 for urn in tracking.tracker.removals if urn in refused)
    report.resend_next_run = len(refused)
    report.info("Checkpoint saved", f"without the {len(refused)} entities the catalog refused ("
                + ", ".join(f"{kind}={n}" for kind, n in _kinds(refused)) + "; they are in the dead letters"
                + (f"; {removals} of them removals, kept pending" if removals else "")
                + "): the next run sends them again; the rest is not sent again")


def _kinds(refused: frozenset) -> list[tuple[str, int]]:
    return sorted(Counter(entity_type(urn) for urn in refused).items())


def _remember_partial_delivery(tracking: ChangeTracking, report: Report) -> None:
    """A failed incremental run delivered some of its proposals: the catalog may hold values that
    MLflow reverts before the next run, which would then see nothing changed. The checkpoint does
    not move, but the entities this run sent are marked for the next run to send again."""
    tracker, store = tracking.tracker, tracking.store
    try:
        store.save(tracking.pipeline_name, tracker.with_partial_delivery())
    except (StateError, OSError) as exc:
        report.warning("State not saved", f"{store.path}: {exc}; the entities this failed run sent may not be "
                       "re-sent by the next incremental run (run once with --full to be sure)")
        return
    report.resend_next_run = tracker.touched
    report.info("Marked for re-sending", f"this failed run sent (or tried to send) {tracker.touched} entities; "
                "the checkpoint did not move and the next run sends them again")


def _after_a_good_run(parts: RunParts) -> None:
    if parts.tracking is not None:
        _save_state(parts.tracking, parts.report)
    if parts.report.ok and parts.dead_letters_to_retire:  # the recipe's own REST sink
        _retire_dead_letters(parts.dead_letters_to_retire, parts.report)


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


def _save_state(tracking: ChangeTracking, report: Report, not_delivered: frozenset = frozenset()) -> None:
    new_state = tracking.tracker.new_state(report.run_id, not_delivered)
    store = tracking.store
    try:
        store.save(tracking.pipeline_name, new_state)
        report.checkpoint_after = new_state.checkpoint
    except (StateError, OSError) as exc:
        report.failure("State not saved", f"{store.path}: {exc}")


def _checkpoint(parts: RunParts) -> None:
    """Everything so far is delivered: a stopped crawl can resume from here."""
    tracking = parts.tracking
    if tracking is None or parts.report.failure_count:
        return
    parts.sink.flush()
    tracking.store.save(tracking.pipeline_name, tracking.tracker.with_progress(parts.report.run_id))


def _crawl_and_deliver(parts: RunParts) -> SinkResult:
    report, sink = parts.report, parts.sink
    started = time.monotonic()
    backend = None
    try:
        backend = open_backend(parts.connection)
        with MlflowCrawler(backend, parts.crawl, _CrawlEvents(report)) as crawler:
            _deliver(_proposals(parts, crawler), parts)
            report.point_lookups = crawler.point_lookups
    except (SourceError, SinkError, StateError) as exc:
        report.failure(_title(exc), str(exc))
        return sink.abort()
    except (KeyboardInterrupt, Stopped):  # Ctrl-C, or SIGTERM from a cron timeout (see cli.py)
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
        return _end_delivery(parts)
    finally:
        report.final_delivery_sec = round(time.monotonic() - crawled, 3)


def _end_delivery(parts: RunParts) -> SinkResult:
    """Commit only a run that went well: a failed run never replaces the sink's previous output
    (a REST sink still delivers, or dead-letters, what it was given: nothing is lost)."""
    sink, report = parts.sink, parts.report
    if report.failure_count:
        return sink.abort()
    try:
        result = sink.commit()
    except (SinkError, OSError) as exc:
        report.failure("Sink failed", str(exc))
        return sink.abort()
    except (KeyboardInterrupt, Stopped):
        report.failure("Interrupted", "stopped during the final delivery; what was not delivered is dead-lettered")
        return sink.abort()
    if _stopped(parts):  # the REST sink ends its delivery on a stop itself: still a stopped run
        report.failure("Interrupted", "stopped during the final delivery; what was not delivered is "
                                      "dead-lettered, and this run's checkpoint is not saved")
        return result
    report.output = sink.output
    return result


def _stopped(parts: RunParts) -> bool:
    """The run was told to stop, or the REST sink it was given stopped its delivery."""
    return parts.stop.requested() or (isinstance(parts.sink, RestSink) and parts.sink.stop.requested())


def _deliver(stream: Iterator[Union[Mcp, _CheckpointDue]], parts: RunParts) -> None:
    """Each proposal into the sink before the next is made; a checkpoint where the stream says."""
    report, sink, preview = parts.report, parts.sink, parts.options.preview
    count = 0
    for item in stream:
        if isinstance(item, _CheckpointDue):
            _checkpoint(parts)
            continue
        count += 1
        system_metadata = {"lastObserved": int(time.time() * 1000), "runId": report.run_id}
        report.proposal(item.entity_type, item.entity_urn, item.aspect_name)
        sink.write(item, system_metadata)
        if preview and count >= preview:
            report.info("Preview", f"stopped after {preview} proposals (--preview)")
            break


def _chosen(parts: RunParts, record, memory: MappingMemory) -> list[MappedEntity]:
    """The catalog entities of `record` to send: mapped, then selected by the tracker (which may
    say, from a version's registry data, that it is not worth mapping)."""
    tracker = parts.tracker
    if tracker is not None and not tracker.observe(record):
        return []
    entities = list(entities_of(parts.ctx, record, memory))
    return entities if tracker is None else tracker.select(record, entities)


def _proposals(parts: RunParts, crawler: MlflowCrawler) -> Iterator[Union[Mcp, _CheckpointDue]]:
    """Every proposal of this run, in order: stage tags, the crawl's records in the crawler's order
    (crawler.py), then removals and cleared aspects. With a tracker, unchanged entities are left
    out of incremental runs. The crawl's markers go to the tracker; a page end becomes a
    checkpoint in the stream."""
    report, tracker = parts.report, parts.tracker
    progress = Progress(report, parts.options.progress_interval)
    listing = crawler.list_mlflow()
    plan = tracker.plan(listing, parts.resumable) if tracker is not None else FullPlan()
    memory = MappingMemory()  # shared entities emitted so far, and the mapping's warnings
    stage_tags = list(stage_tag_entities())
    for entity in stage_tags if tracker is None else tracker.select(None, stage_tags):
        yield from entity.proposals
    for record in crawler.crawl(listing, plan):
        if isinstance(record, MARKER_TYPES):
            if tracker is not None:
                tracker.observe(record)
            if isinstance(record, RunsPageEnd) and parts.resumable:
                yield CHECKPOINT_DUE
            continue
        try:
            chosen = _chosen(parts, record, memory)
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
    if parts.tracking is not None:
        yield from _removals(parts.tracking, report)
        if not report.failure_count:
            yield from parts.tracking.tracker.clearing_proposals()


def _removals(tracking: ChangeTracking, report: Report) -> Iterator[Mcp]:
    if report.failure_count:  # a crawl with failures cannot tell what is gone
        return
    tracker, policy = tracking.tracker, tracking.removal
    tracker.finish_removals()
    if not policy.remove_stale or not tracker.removals:
        return
    if tracker.removed:
        refusal = tracker.removal_refused(policy.max_removal_ratio)
        if refusal and not policy.allow_mass_removal:
            report.failure("Stale-entity removal refused", refusal)
            return
        if refusal:
            report.info("Mass removal confirmed", f"--allow-mass-removal: removing {len(tracker.removed)} "
                        f"entities although {refusal.split(';')[0]}")
    report.removals_emitted = True
    yield from tracker.removal_proposals()
