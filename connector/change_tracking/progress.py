"""How far an unfinished full crawl got, page by page, so `--resume` can go on from there."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from connector.source.crawl_records import ResumePlan, PageProgress


@dataclass(frozen=True)
class RunsPosition:
    """Within a batch of experiments: runs up to `start_time`, and those at it listed, are done."""
    experiment_ids: tuple[str, ...]
    start_time: int
    ids_at_start_time: tuple[str, ...]


@dataclass(frozen=True)
class BackfillProgress:
    done_experiments: frozenset[str] = frozenset()
    current: Optional[RunsPosition] = None

    def after(self, page: PageProgress) -> "BackfillProgress":
        if page.batch_done:
            return BackfillProgress(self.done_experiments | frozenset(page.experiment_ids), None)
        if page.start_time is None:
            return self
        return BackfillProgress(self.done_experiments,
                                RunsPosition(page.experiment_ids, page.start_time, page.ids_at_start_time))

    def resume_plan(self) -> ResumePlan:
        current = self.current
        return ResumePlan(done_experiments=self.done_experiments,
                          current_experiment_ids=current.experiment_ids if current else (),
                          start_time=current.start_time if current else 0,
                          ids_at_start_time=current.ids_at_start_time if current else ())

    def to_json(self) -> dict:
        current = self.current
        return {"done_experiments": sorted(self.done_experiments),
                "current": None if current is None else {
                    "experiment_ids": list(current.experiment_ids), "start_time": current.start_time,
                    "ids_at_start_time": list(current.ids_at_start_time)}}

    @classmethod
    def from_json(cls, data: Optional[dict]) -> "BackfillProgress":
        data = data or {}
        current = data.get("current") or None
        return cls(frozenset(data.get("done_experiments") or ()), None if not current else RunsPosition(
            tuple(current.get("experiment_ids") or ()), int(current.get("start_time") or 0),
            tuple(current.get("ids_at_start_time") or ())))
