"""Runs that remember: which mode to crawl in, what to emit, what to remove, the new checkpoint.

- full: emit everything; entities of the last checkpoint that are gone now get status removed.
- incremental: emit only entities whose MLflow data changed since the checkpoint (by fingerprint),
  plus removals MLflow still shows (deleted runs) or that full listings reveal (experiments,
  registered models and versions are listed whole on every run: they are few).
- resume: go on with a full crawl that stopped; what it already delivered (fingerprints saved
  with its progress) is not sent again; removals as in a full crawl.
A removal of more than `max_removal_ratio` of the checkpoint's entities is refused: a crawl that
finds (almost) nothing is more likely broken than a registry that was emptied.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from connector.mapping import urns
from connector.mapping.common import MappingContext, Mcp, status
from connector.mapping.records import MappedEntity, fingerprint
from connector.source.records import IncrementalPlan, ResumePlan
from connector.state.store import PipelineState, compact, expand

# Aspects a model or group has only while MLflow holds data for them. When one was emitted
# before and is not now, its cleared value is sent: otherwise the catalog would keep it forever.
CLEARED_ASPECTS = {
    "deprecation": {"deprecated": False, "note": "", "actor": "urn:li:corpuser:mlflow"},
    # (an empty {} aspect cannot be read back from a file by DataHub's tools: name the empty fields)
    "intendedUse": {"primaryUses": [], "primaryUsers": [], "outOfScopeUses": []},
    "mlModelEthicalConsiderations": {"data": [], "humanLife": [], "mitigations": [], "risksAndHarms": [],
                                     "useCases": []},
    "mlModelCaveatsAndRecommendations": {"idealDatasetCharacteristics": []},
    "mlModelFactorPrompts": {"relevantFactors": [], "evaluationFactors": []},
    "mlModelTrainingData": {"trainingData": []},
    "mlModelEvaluationData": {"evaluationData": []},
}
_OWNER_ASPECTS = ("mlModelProperties", "mlModelGroupProperties")  # the aspect every re-emission has

# Entity kinds an incremental crawl lists in full, so their disappearance is visible to it.
_FULLY_LISTED = ("urn:li:container:", "urn:li:mlModelGroup:", "urn:li:mlModel:")
_OPEN_STATUSES = {"RUNNING", "SCHEDULED"}


def config_fingerprint(ctx: MappingContext, source_filters: tuple) -> str:
    return fingerprint(repr(ctx), source_filters)


@dataclass
class ChangeTracker:
    previous: PipelineState
    mode: str                       # full | incremental
    config_hash: str
    lookback_ms: int = 3_600_000
    separator: str = "_"
    env: str = "PROD"
    platform_instance: Optional[str] = None
    experiments: dict = field(default_factory=dict)    # experiment id -> container URN, this run
    current: dict = field(default_factory=dict)        # URN -> fingerprint of this run's view
    seen_listed: set = field(default_factory=set)      # fully listed kinds seen by this run
    removed: list = field(default_factory=list)
    changed_runs: set = field(default_factory=set)
    open_runs: set = field(default_factory=set)
    max_start_time: int = 0
    max_registry_update: int = 0
    started_at: int = field(default_factory=lambda: int(time.time() * 1000))
    baseline: dict = field(default_factory=dict)       # what is already in the catalog, to skip
    progress: dict = field(default_factory=lambda: {"done_experiments": [], "current": None})
    optional_now: dict = field(default_factory=dict)   # URN -> optional aspects emitted this run

    @classmethod
    def start(cls, previous: PipelineState, want_incremental: bool, config_hash: str,
              lookback_sec: int, ctx: MappingContext, resume: bool = False) -> "ChangeTracker":
        backfill = previous.backfill or {}
        if resume and backfill.get("config_hash") == config_hash:
            tracker = cls(previous, "resume", config_hash, lookback_sec * 1000, ctx.model_name_separator, ctx.env,
                          ctx.platform_instance)
            tracker.current = expand(backfill.get("fingerprints") or {})
            tracker.baseline = dict(tracker.current)
            tracker.open_runs = set(backfill.get("open_runs") or [])
            tracker.max_start_time = int(backfill.get("max_start_time") or 0)
            tracker.progress = backfill.get("progress") or tracker.progress
            tracker.started_at = int(backfill.get("started_at") or tracker.started_at)
            return tracker
        incremental = (want_incremental and previous.has_checkpoint and previous.config_hash == config_hash)
        tracker = cls(previous, "incremental" if incremental else "full", config_hash, lookback_sec * 1000,
                      ctx.model_name_separator, ctx.env, ctx.platform_instance)
        if incremental:
            tracker.current = dict(previous.fingerprints)
            tracker.baseline = previous.fingerprints
        return tracker

    @property
    def incremental(self) -> bool:
        return self.mode == "incremental"

    def plan(self):
        if self.mode == "resume":
            current = self.progress.get("current") or {}
            return ResumePlan(done_experiments=frozenset(self.progress.get("done_experiments") or ()),
                              current_experiment_ids=tuple(current.get("experiment_ids") or ()),
                              start_time=int(current.get("start_time") or 0),
                              ids_at_start_time=tuple(current.get("ids_at_start_time") or ()))
        if not self.incremental:
            return None
        since = int(self.previous.checkpoint.get("runs_started_until", 0)) - self.lookback_ms
        known = self.previous.fingerprints
        return IncrementalPlan(
            runs_started_since=max(0, since),
            refetch_run_ids=frozenset(self.previous.open_runs),
            refetch_run_of=lambda v: urns.model_urn(v.name, v.version, self.separator, self.env) not in known,
            refetch_runs_in=lambda e: self.previous.experiments.get(e.experiment_id, self.instance_urn(e))
            != self.instance_urn(e),
        )

    def instance_urn(self, experiment) -> str:
        return urns.experiment_urn(experiment.name, self.platform_instance)

    def saw_experiment(self, experiment) -> None:
        self.experiments[experiment.experiment_id] = self.instance_urn(experiment)

    # -- per entity ------------------------------------------------------------
    def saw_registry_update(self, millis) -> None:
        self.max_registry_update = max(self.max_registry_update, int(millis or 0))

    def saw_run(self, run) -> None:
        if run.start_time:
            self.max_start_time = max(self.max_start_time, run.start_time)
        if run.status in _OPEN_STATUSES:
            self.open_runs.add(run.run_id)

    def _see(self, urn: str, fp: str) -> Optional[str]:
        self.current[urn] = fp
        if urn.startswith(_FULLY_LISTED):
            self.seen_listed.add(urn)
        return self.baseline.get(urn)

    def should_emit(self, entity: MappedEntity) -> bool:
        before = self._see(entity.urn, entity.fingerprint)
        changed = before != entity.fingerprint
        if changed and entity.urn.startswith("urn:li:dataProcessInstance:"):
            self.changed_runs.add(entity.urn)
        return changed or self.mode == "full"

    def version_needs_emit(self, urn: str, fp: str, run_id: str) -> bool:
        """A version is emitted when it changed, or when its run changed (params, metrics)."""
        before = self._see(urn, fp)
        run_changed = bool(run_id) and urns.run_urn(run_id) in self.changed_runs
        return before != fp or run_changed or self.mode == "full"

    def deleted_run(self, run_id: str) -> None:
        urn = urns.run_urn(run_id)
        if urn in self.current:
            del self.current[urn]
            self.removed.append(urn)

    def observe(self, proposal: Mcp) -> None:
        """Called for every proposal sent: which optional aspects each model/group has now."""
        if proposal.aspect_name in _OWNER_ASPECTS:
            self.optional_now.setdefault(proposal.entity_urn, set())
        elif proposal.aspect_name in CLEARED_ASPECTS and proposal.aspect != CLEARED_ASPECTS[proposal.aspect_name]:
            self.optional_now.setdefault(proposal.entity_urn, set()).add(proposal.aspect_name)

    def clearing_proposals(self) -> list[Mcp]:
        """Cleared values for optional aspects re-emitted entities no longer have."""
        out = []
        for urn, aspects in sorted(self.optional_now.items()):
            if urn in self.removed:
                continue
            for name in sorted(self.previous.optional_aspects.get(urn, set()) - aspects):
                out.append(Mcp(urn, name, dict(CLEARED_ASPECTS[name])))
        return out

    # -- at the end ------------------------------------------------------------
    def finish_removals(self) -> None:
        """Entities of the checkpoint that this run's view no longer has."""
        if self.incremental:
            gone = [u for u in self.previous.fingerprints
                    if u.startswith(_FULLY_LISTED) and u not in self.seen_listed and u in self.current]
            for urn in gone:
                del self.current[urn]
            self.removed.extend(gone)
        else:
            self.removed.extend(u for u in self.previous.fingerprints if u not in self.current)
        self.removed = sorted(set(self.removed))

    def removal_refused(self, max_ratio: float, min_kind_size: int = 10) -> Optional[str]:
        """Why this removal looks like a broken crawl (None when it does not): more than
        `max_ratio` of all known entities, or of any kind with at least `min_kind_size` of them
        (an incremental run can only remove what it lists whole, so a ratio over all entities
        would let it remove every experiment and model when MLflow answers with nothing)."""
        known = len(self.previous.fingerprints)
        if known and len(self.removed) > max_ratio * known:
            return (f"would remove {len(self.removed)} of {known} entities "
                    f"(more than {max_ratio:.0%}): MLflow may have answered with nothing; "
                    f"no removal emitted and the checkpoint kept")
        for kind in sorted({urns.entity_type(u) for u in self.removed}):
            of_kind = sum(1 for u in self.previous.fingerprints if urns.entity_type(u) == kind)
            gone = sum(1 for u in self.removed if urns.entity_type(u) == kind)
            if of_kind >= min_kind_size and gone > max_ratio * of_kind:
                return (f"would remove {gone} of {of_kind} {kind} entities (more than {max_ratio:.0%}): "
                        f"MLflow may have answered with nothing; no removal emitted and the checkpoint kept")
        return None

    # -- a full crawl's progress, for --resume ------------------------------------------
    def page_done(self, marker) -> None:
        if marker.batch_done:
            self.progress["done_experiments"] = sorted(set(self.progress["done_experiments"])
                                                       | set(marker.experiment_ids))
            self.progress["current"] = None
        elif marker.start_time is not None:
            self.progress["current"] = {"experiment_ids": list(marker.experiment_ids),
                                        "start_time": marker.start_time,
                                        "ids_at_start_time": list(marker.ids_at_start_time)}

    def with_progress(self, run_id: str) -> PipelineState:
        """The previous checkpoint, unchanged, plus this unfinished crawl's progress."""
        backfill = {"run_id": run_id, "config_hash": self.config_hash, "progress": self.progress,
                    "fingerprints": compact(self.current), "open_runs": sorted(self.open_runs),
                    "max_start_time": self.max_start_time, "started_at": self.started_at}
        p = self.previous
        return PipelineState(checkpoint=p.checkpoint, open_runs=p.open_runs, config_hash=p.config_hash,
                             fingerprints=p.fingerprints, backfill=backfill, optional_aspects=p.optional_aspects,
                             experiments=p.experiments)

    def removal_proposals(self) -> list[Mcp]:
        return [Mcp(urn, "status", status(True)) for urn in self.removed]

    def new_state(self, run_id: str) -> PipelineState:
        previous_until = int(self.previous.checkpoint.get("runs_started_until", 0))
        checkpoint = {
            "runs_started_until": max(previous_until, self.max_start_time),
            "registry_updated_until": max(int(self.previous.checkpoint.get("registry_updated_until", 0)),
                                          self.max_registry_update),
            "finished_at": int(time.time() * 1000),
            "started_at": self.started_at,
            "run_id": run_id,
            "mode": self.mode,
        }
        optional = {u: set(a) for u, a in self.previous.optional_aspects.items()
                    if u in self.current and u not in self.optional_now}
        optional.update({u: a for u, a in self.optional_now.items() if a and u in self.current})
        experiments = {**self.previous.experiments, **self.experiments} if self.incremental else self.experiments
        return PipelineState(checkpoint=checkpoint, open_runs=sorted(self.open_runs),
                             config_hash=self.config_hash, fingerprints=dict(self.current),
                             optional_aspects=optional, experiments=experiments)
