"""Which runs a crawl reads, as three strategies over one reader:
- FullRuns: every run of the included experiments;
- ResumableRuns: the same, oldest first, telling the observer after each page (so a stopped
  crawl can go on from the last page: start times do not shift when runs are added or deleted);
- IncrementalRuns: runs started since the checkpoint, runs to read again by id, all runs of
  renamed experiments, and runs deleted since (told to the observer, not yielded)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Optional

from connector.source.backend import Backend
from connector.source.mlflow_objects import Run
from connector.source.errors import MlflowApiError
from connector.source.paging import Listing, prefetched
from connector.source.crawl_records import (
    CrawlObserver, IncrementalPlan, ResumePlan, RunsObserver, PageProgress, parsed,
)

EXPERIMENT_IDS_PER_RUN_SEARCH = 100
RUN_IDS_PER_LOOKUP = 100


def _batches(ids: list[str], size: int = EXPERIMENT_IDS_PER_RUN_SEARCH) -> list[list[str]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


class RunReader:
    """Paged run searches and bulk look-ups by id."""

    def __init__(self, backend: Backend, page_size: int, executor: ThreadPoolExecutor, observer: CrawlObserver):
        self.backend = backend
        self.observer = observer
        self.page_size = page_size
        self.executor = executor
        self.point_lookups = 0

    def listing(self, experiment_ids: list[str], filter_string: str, view_type: str,
                order_by: Optional[list[str]] = None) -> Listing:
        return Listing("runs/search", lambda token: self.backend.search_runs(
            experiment_ids, filter_string, view_type, self.page_size, token, order_by))

    def search(self, experiment_ids: list[str], filter_string: str, view_type: str) -> Iterator[Run]:
        listings = [self.listing(batch, filter_string, view_type) for batch in _batches(experiment_ids)]
        for _, page in prefetched(listings, self.executor):
            yield from parsed(page, Run.from_json, self.observer)

    def lookup(self, run_ids: set[str], experiment_ids: list[str]) -> dict[str, Run]:
        """Runs by id: in bulk (`run_id IN (...)`), else one by one where the server refuses that."""
        found: dict[str, Run] = {}
        ids = sorted(run_ids)
        for chunk in _batches(ids, RUN_IDS_PER_LOOKUP):
            flt = "attributes.run_id IN (" + ", ".join(f"'{i}'" for i in chunk) + ")"
            try:
                for run in self.search(experiment_ids, flt, "ALL"):
                    found[run.run_id] = run
            except MlflowApiError:
                break  # fall back to point look-ups below
        for run_id in ids:
            if run_id in found:
                continue
            self.point_lookups += 1
            raw = self.backend.get_run(run_id)
            for run in parsed([raw] if raw is not None else [], Run.from_json, self.observer):
                found[run_id] = run
        return found


class FullRuns:
    def __init__(self, experiment_ids: list[str], view_type: str):
        self.experiment_ids = experiment_ids
        self.view_type = view_type

    def runs(self, reader: RunReader, observer: RunsObserver) -> Iterator[Run]:
        return reader.search(self.experiment_ids, "", self.view_type)


class ResumableRuns:
    def __init__(self, experiment_ids: list[str], view_type: str, resume: Optional[ResumePlan]):
        self.view_type = view_type
        pending = [e for e in experiment_ids if not resume or e not in resume.done_experiments]
        # (experiment ids, filter, run ids already delivered at the filter's start time)
        self.batches: list[tuple[list[str], str, frozenset]] = []
        if resume and resume.current_experiment_ids:
            current = [e for e in resume.current_experiment_ids if e in pending]
            pending = [e for e in pending if e not in current]
            if current:
                self.batches.append((current, f"attributes.start_time >= {int(resume.start_time)}",
                                     frozenset(resume.ids_at_start_time)))
        self.batches += [(batch, "", frozenset()) for batch in _batches(pending)]

    def runs(self, reader: RunReader, observer: RunsObserver) -> Iterator[Run]:
        order = ["attributes.start_time ASC"]
        listings = [reader.listing(ids, flt, self.view_type, order) for ids, flt, _ in self.batches]
        last_time: Optional[int] = None
        ids_at_last: list[str] = []
        last_batch: Optional[int] = None
        for index, page in prefetched(listings, reader.executor):
            ids, _, skip = self.batches[index]
            if index != last_batch:
                if last_batch is not None:
                    observer.runs_page_done(PageProgress(tuple(self.batches[last_batch][0]), None, (), True))
                last_time, ids_at_last, last_batch = None, [], index
            for run in parsed(page, Run.from_json, observer):
                if run.start_time != last_time:
                    last_time, ids_at_last = run.start_time, []
                ids_at_last.append(run.run_id)
                if run.run_id not in skip:
                    yield run
            observer.runs_page_done(PageProgress(tuple(ids), last_time, tuple(ids_at_last)))
        if last_batch is not None:
            observer.runs_page_done(PageProgress(tuple(self.batches[last_batch][0]), None, (), True))


class IncrementalRuns:
    def __init__(self, plan: IncrementalPlan, included_ids: list[str], all_ids: list[str], view_type: str,
                 include_deleted: bool):
        self.plan = plan
        self.included_ids = included_ids
        self.all_ids = all_ids
        self.view_type = view_type
        self.include_deleted = include_deleted

    def runs(self, reader: RunReader, observer: RunsObserver) -> Iterator[Run]:
        included = set(self.included_ids)
        seen: set[str] = set()
        flt = f"attributes.start_time >= {int(self.plan.runs_started_since)}"
        for run in reader.search(self.included_ids, flt, self.view_type):
            seen.add(run.run_id)
            yield run
        renamed = [i for i in self.included_ids if i in self.plan.refetch_experiment_ids]
        for run in reader.search(renamed, "", self.view_type) if renamed else ():
            if run.run_id not in seen:
                seen.add(run.run_id)
                yield run
        again = set(self.plan.refetch_run_ids) - seen
        for run in reader.lookup(again, self.all_ids).values():
            if run.experiment_id in included and (run.lifecycle_stage == "active" or self.include_deleted):
                yield run
        for run in reader.search(self.all_ids, "", "DELETED_ONLY"):
            if self.include_deleted and run.experiment_id in included:
                if run.run_id not in seen:  # mapped like any run, with status removed
                    yield run
            else:
                observer.run_deleted(run.run_id)
