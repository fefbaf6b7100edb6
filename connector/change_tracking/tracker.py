"""The change tracker of one run: picks the mode and makes the crawl's plan; then it observes the
stream the pipeline delivers - each record and marker (`observe`: what was seen, page ends,
deleted runs) and the entities mapping made of a record (`select`: fingerprints, what to send) -
and at the end computes removals, cleared aspects and the state to save. Nothing calls into it
from inside the crawl.

Modes:
- full: send everything; entities of the last checkpoint that are gone now get status removed.
- incremental: send only entities whose MLflow data changed since the checkpoint (by fingerprint),
  plus removals MLflow still shows (deleted runs) or that whole listings reveal (experiments,
  registered models and versions are listed whole on every run: they are few).
- resume: go on with a full crawl that stopped; what it already delivered (fingerprints saved
  with its progress) is not sent again; removals as in a full crawl.
"""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Iterable, Optional

from connector.mapping import urns
from connector.mapping.common import MappingContext, Mcp, status
from connector.mapping.catalog_entities import MappedEntity, fingerprint, version_fingerprint
from connector.mapping.version import MAPPING_VERSION
from connector.source.crawl_records import (
    CrawlPlan, ExperimentRecord, FullPlan, IncrementalPlan, ModelGroupRecord, NotListed, RunGone, RunRecord,
    RunsPageEnd, VersionRecord,
)
from connector.source.registry_index import MlflowListing
from connector.state.store import PipelineState, compact, expand
from connector.change_tracking.changes import ChangeDetector
from connector.change_tracking.optional_aspects import OptionalAspects
from connector.change_tracking.progress import BackfillProgress
from connector.change_tracking.removals import gone_entities, removal_refusal

_OPEN_STATUSES = {"RUNNING", "SCHEDULED"}


def config_fingerprint(ctx: MappingContext, source_filters: tuple) -> str:
    """The settings the fingerprints were made with, and the mapping's version: a change of
    either makes the next run a full crawl (every entity re-sent, mapped the new way)."""
    return fingerprint(repr(ctx), source_filters, MAPPING_VERSION)


CLOCK_SKEW_MS = 5 * 60 * 1000  # a checkpoint further ahead of our clock than this is not believed


def checkpoint_in_future(previous: PipelineState, now_ms: int) -> bool:
    """A checkpoint past now (an older version let a run dated 2100 move it): an incremental crawl
    from it would never see a new run again."""
    checkpoint = previous.checkpoint
    return max(int(checkpoint.get("runs_started_until", 0) or 0),
               int(checkpoint.get("registry_updated_until", 0) or 0)) > now_ms + CLOCK_SKEW_MS


def choose_mode(previous: PipelineState, want_incremental: bool, config_hash: str, resume: bool,
                now_ms: Optional[int] = None) -> str:
    backfill = previous.backfill or {}
    if resume and backfill.get("config_hash") == config_hash:
        return "resume"
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if want_incremental and previous.has_checkpoint and previous.config_hash == config_hash \
            and previous.mapping_version == MAPPING_VERSION and not checkpoint_in_future(previous, now_ms):
        return "incremental"
    return "full"


class ChangeTracker:
    def __init__(self, previous: PipelineState, mode: str, config_hash: str, lookback_sec: int,
                 ctx: MappingContext):
        self.previous = previous
        self.mode = mode
        self.config_hash = config_hash
        self.lookback_ms = lookback_sec * 1000
        self.ctx = ctx
        self.started_at = int(time.time() * 1000)
        self.experiments: dict[str, str] = {}  # experiment id -> container URN, this run
        self.open_runs: set[str] = set()
        self.seen_runs: set[str] = set()  # run ids this crawl yielded
        self.max_start_time = 0
        self.max_registry_update = 0
        self.deleted: list[str] = []
        self.not_listed: set[str] = set()  # entity types MLflow refused to list this run: none removed
        self.removed: list[str] = []
        self.progress = BackfillProgress()
        # URN -> what made it, for every entity chosen this run: ("run", id), ("version", URN) or None
        # (listed whole on every run); an entity not delivered is re-sent by reading its origin again
        self.origins: dict[str, Optional[tuple]] = {}
        self.pending: list[str] = []  # removals of earlier runs the catalog has not taken yet
        baseline: dict[str, str] = {}
        if mode == "resume":
            backfill = previous.backfill or {}
            baseline = expand(backfill.get("fingerprints") or {})
            self.open_runs = set(backfill.get("open_runs") or [])
            self.max_start_time = int(backfill.get("max_start_time") or 0)
            self.progress = BackfillProgress.from_json(backfill.get("progress"))
            self.started_at = int(backfill.get("started_at") or self.started_at)
        elif mode == "incremental":
            baseline = previous.fingerprints
        self.changes = ChangeDetector(baseline, dict(baseline), emit_all=mode == "full")
        self.optional = OptionalAspects(previous.optional_aspects)

    @classmethod
    def start(cls, previous: PipelineState, want_incremental: bool, config_hash: str, lookback_sec: int,
              ctx: MappingContext, resume: bool = False) -> "ChangeTracker":
        return cls(previous, choose_mode(previous, want_incremental, config_hash, resume), config_hash,
                   lookback_sec, ctx)

    @property
    def incremental(self) -> bool:
        return self.mode == "incremental"

    # -- before the crawl ---------------------------------------------------------------------
    def _container_urn(self, experiment) -> str:
        return urns.experiment_urn(experiment.name, self.ctx.platform_instance)

    def _version_urn(self, version) -> str:
        return urns.model_urn(version.name, version.version, self.ctx.model_name_separator, self.ctx.env,
                              instance=self.ctx.platform_instance)

    def plan(self, listing: MlflowListing, resumable: bool = False) -> CrawlPlan:
        if self.mode == "resume":
            return self.progress.resume_plan()
        if not self.incremental:
            return FullPlan(resumable=resumable)
        known = self.previous.fingerprints
        changed, new_version_runs = set(), set()
        for model, version in listing.registry.all_versions():
            urn = self._version_urn(version)
            is_latest = version.version_number == listing.registry.latest_version_number(model.name)
            if known.get(urn) != version_fingerprint(version, model, is_latest):
                changed.add((version.name, version.version))
            else:
                self.changes.unchanged_but_listed(urn)
            if urn not in known and version.run_id:
                new_version_runs.add(version.run_id)  # its run gains an output edge
        renamed = {e.experiment_id for e in listing.experiments
                   if self.previous.experiments.get(e.experiment_id, self._container_urn(e)) != self._container_urn(e)}
        since = int(self.previous.checkpoint.get("runs_started_until", 0)) - self.lookback_ms
        return IncrementalPlan(runs_started_since=max(0, since),
                               refetch_run_ids=frozenset(self.previous.open_runs) | frozenset(new_version_runs)
                               | frozenset(self.previous.dirty_runs),
                               refetch_experiment_ids=frozenset(renamed), changed_versions=frozenset(changed))

    # -- the stream ---------------------------------------------------------------------------
    def observe(self, item) -> bool:
        """Note a record or marker of the crawl's stream. False: a version whose registry data did
        not change (nor its run's): not worth mapping, nothing of it is sent."""
        if isinstance(item, RunsPageEnd):
            self.progress = self.progress.after(item.page)
        elif isinstance(item, RunGone):
            self._run_gone(item.run_id)
        elif isinstance(item, NotListed):
            self.not_listed.update(item.entity_types)
        elif isinstance(item, VersionRecord):
            return self._version_wanted(item)
        else:
            self._note(item)
        return True

    def select(self, record, entities: Iterable[MappedEntity]) -> list[MappedEntity]:
        """The entities mapping made of `record` (observed and wanted) that are to be sent."""
        origin: Optional[tuple] = None
        if isinstance(record, VersionRecord):
            version, *shared = entities  # its features and deployments are shared: sent when changed
            chosen = [version] + [e for e in shared if self.changes.should_emit(e)]
            origin = ("version", version.urn)
        else:
            chosen = [e for e in entities if self.changes.should_emit(e)]
            if isinstance(record, RunRecord):
                origin = ("run", record.run.run_id)
        for entity in chosen:
            self.origins.setdefault(entity.urn, origin)
            for proposal in entity.proposals:
                self.optional.sent(proposal)
        return chosen

    def _note(self, record) -> None:
        if isinstance(record, RunRecord):
            run = record.run
            self.seen_runs.add(run.run_id)
            if run.start_time:
                self.max_start_time = max(self.max_start_time, run.start_time)
            if run.status in _OPEN_STATUSES:
                self.open_runs.add(run.run_id)
        elif isinstance(record, ExperimentRecord):
            self.experiments[record.experiment.experiment_id] = self._container_urn(record.experiment)
        elif isinstance(record, ModelGroupRecord):
            self.max_registry_update = max(self.max_registry_update, int(record.model.last_updated_timestamp or 0))

    def _version_wanted(self, record: VersionRecord) -> bool:
        version = record.version
        run_urn = urns.run_urn(version.run_id, instance=self.ctx.platform_instance) if version.run_id else ""
        return self.changes.version_should_emit(self._version_urn(version), version_fingerprint(
            version, record.model, record.is_latest), run_urn)

    def _run_gone(self, run_id: str) -> None:
        urn = urns.run_urn(run_id, instance=self.ctx.platform_instance)
        if self.changes.forget(urn):
            self.deleted.append(urn)

    # -- at the end ---------------------------------------------------------------------------
    def finish_removals(self) -> None:
        """Entities of the checkpoint that this run's view no longer has."""
        # a run a failed delivery left dirty was read again by id: not found, it is gone (deleted) in
        # MLflow, and its entities (never in the fingerprints) must go from the catalog too
        gone_dirty = [] if self.mode == "resume" else [
            urns.run_urn(run_id, instance=self.ctx.platform_instance) for run_id in self.previous.dirty_runs
            if run_id not in self.seen_runs]
        self.removed = gone_entities(self.previous.fingerprints, self.changes.current, self.changes.seen_listed,
                                     self.incremental, [*self.deleted, *gone_dirty])
        if self.not_listed:  # a listing MLflow refused tells nothing gone: its kinds are kept
            kept = [u for u in self.removed if urns.entity_type(u) in self.not_listed]
            self.removed = [u for u in self.removed if u not in kept]
            self.changes.current.update((u, self.previous.fingerprints[u]) for u in kept)
        for urn in self.removed:
            self.changes.current.pop(urn, None)
        # one the crawl found again is sent as it is now, not removed
        self.pending = [u for u in self.previous.pending_removals if u not in self.changes.current
                        and u not in self.removed]

    @property
    def removals(self) -> list[str]:
        """Every URN this run sends as removed: gone now, or gone before and not yet taken."""
        return self.removed + self.pending

    def removal_refused(self, max_ratio: float, min_kind_size: int = 10) -> Optional[str]:
        saved_for = self.previous.checkpoint.get("platform_instance")
        if self.removed and saved_for and saved_for != self.ctx.platform_instance:
            return (f"the state was saved by a run for platform_instance {saved_for!r} and this recipe has "
                    f"{self.ctx.platform_instance!r}; two recipes may share one pipeline_name and state (give "
                    "each its own pipeline_name), or, after renaming the instance, confirm the removal of "
                    "the old URNs once with --allow-mass-removal")
        return removal_refusal(self.removed, self.previous.fingerprints, self.changes.current, max_ratio,
                               min_kind_size)

    def removal_proposals(self) -> list[Mcp]:
        return [Mcp(urn, "status", status(True)) for urn in self.removals]

    def clearing_proposals(self) -> list[Mcp]:
        return self.optional.clearing_proposals(set(self.removed))

    def with_progress(self, run_id: str) -> PipelineState:
        """The previous checkpoint, unchanged, plus this unfinished crawl's progress."""
        backfill = {"run_id": run_id, "config_hash": self.config_hash, "progress": self.progress.to_json(),
                    "fingerprints": compact(self.changes.current), "open_runs": sorted(self.open_runs),
                    "max_start_time": self.max_start_time, "started_at": self.started_at}
        p = self.previous
        return PipelineState(checkpoint=p.checkpoint, open_runs=p.open_runs, config_hash=p.config_hash,
                             fingerprints=p.fingerprints, backfill=backfill, optional_aspects=p.optional_aspects,
                             experiments=p.experiments, pending_removals=p.pending_removals,
                             dirty_runs=p.dirty_runs, mapping_version=p.mapping_version)

    def _not_sure(self, unsure: Iterable[str]) -> tuple[set[str], set[str]]:
        """Entities whose value in the catalog is not sure, with the entities that made them: their
        fingerprints to drop (the next run re-sends them), and the runs to read again."""
        forget, runs = set(), set()
        for urn in unsure:
            forget.add(urn)
            origin = self.origins.get(urn)
            if origin is None:
                continue
            kind, key = origin
            if kind == "run":
                runs.add(key)
                forget.add(urns.run_urn(key, instance=self.ctx.platform_instance))
            else:
                forget.add(key)
        return forget, runs

    def with_partial_delivery(self) -> PipelineState:
        """The previous checkpoint, unchanged, less what this failed run may have delivered: the
        catalog may now hold values MLflow could still revert to the checkpoint's, so the next
        run sends those entities again (it reads their runs again by id)."""
        p = self.previous
        forget, runs = self._not_sure(self.origins)
        return replace(p, fingerprints={u: fp for u, fp in p.fingerprints.items() if u not in forget},
                       dirty_runs=sorted(set(p.dirty_runs) | runs))

    @property
    def touched(self) -> int:
        """Entities this run chose to send."""
        return len(self.origins)

    def _high_water_mark(self, key: str, seen: int) -> int:
        """Never past the time this crawl started (a run dated 2100 cannot blind the next runs);
        a full crawl takes what it saw, an incremental one keeps the checkpoint's if higher."""
        if self.mode == "incremental":
            seen = max(int(self.previous.checkpoint.get(key, 0) or 0), seen)
        return min(seen, self.started_at)

    def new_state(self, run_id: str, not_delivered: frozenset = frozenset()) -> PipelineState:
        """The state to save; `not_delivered`: entities the catalog refused, left out (with the
        entities that made them) so that the next run sends them again: removals stay pending,
        runs are read again by id."""
        checkpoint = {
            "runs_started_until": self._high_water_mark("runs_started_until", self.max_start_time),
            "registry_updated_until": self._high_water_mark("registry_updated_until", self.max_registry_update),
            "finished_at": int(time.time() * 1000),
            "started_at": self.started_at,
            "run_id": run_id,
            "mode": self.mode,
        }
        if self.ctx.platform_instance:  # whose entities the fingerprints are (see removal_refused)
            checkpoint["platform_instance"] = self.ctx.platform_instance
        forget, runs = self._not_sure(not_delivered) if not_delivered else (set(), set())
        current = {u: fp for u, fp in self.changes.current.items() if u not in forget}
        experiments = {**self.previous.experiments, **self.experiments} if self.incremental else self.experiments
        return PipelineState(checkpoint=checkpoint, open_runs=sorted(self.open_runs), config_hash=self.config_hash,
                             fingerprints=dict(current), optional_aspects=self.optional.to_save(current),
                             experiments=experiments, pending_removals=[u for u in self.removals if u in forget],
                             dirty_runs=sorted(runs), mapping_version=MAPPING_VERSION)
