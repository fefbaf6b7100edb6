"""The run strategies of connector/source/runs.py, offline: which searches each asks an MLflow for
(experiments, filter, view, order), which runs it yields and what it tells the observer. The
backend is a small MLflow in this process: runs as MLflow's REST JSON, filtered, ordered and paged
as MLflow does for the filters the crawler writes."""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

import pytest

from connector.source.crawl_records import IncrementalPlan, ResumePlan, PageProgress
from connector.source.errors import MlflowApiError
from connector.source.paging import PageLoopError
from connector.source.runs import FullRuns, IncrementalRuns, ResumableRuns, RunReader

_SINCE = re.compile(r"^attributes\.start_time >= (\d+)$")
_IDS = re.compile(r"^attributes\.run_id IN \((.*)\)$")


def run_json(run_id: str, experiment_id: str, start_time: int, stage: str = "active") -> dict:
    return {"info": {"run_id": run_id, "experiment_id": experiment_id, "run_name": f"name-{run_id}",
                     "start_time": start_time, "status": "FINISHED", "lifecycle_stage": stage},
            "data": {"params": [{"key": "lr", "value": "0.1"}], "metrics": [], "tags": []}}


def _start(run: dict) -> int:
    start = run["info"].get("start_time")
    return start if isinstance(start, int) else 0


class RunsMlflow:
    """The run part of backend.py's Backend: search_runs and get_run over a list of runs."""

    tracking_location = registry_location = "in-process"
    requests_made = retries_made = 0

    def __init__(self, runs: list[dict], refuse_id_filter: bool = False, repeat_token: bool = False):
        self.runs = runs
        self.refuse_id_filter = refuse_id_filter  # a server that answers `run_id IN (...)` with an error
        self.repeat_token = repeat_token          # a server that answers the same next-page token forever
        self.searches: list[tuple] = []           # (experiment ids, filter, view type, order_by, page token)
        self.gets: list[str] = []

    def search_runs(self, experiment_ids, filter_string, view_type, max_results, page_token, order_by=None):
        self.searches.append((tuple(experiment_ids), filter_string, view_type, tuple(order_by or ()), page_token))
        stages = {"ACTIVE_ONLY": {"active"}, "DELETED_ONLY": {"deleted"}, "ALL": {"active", "deleted"}}[view_type]
        found = [r for r in self.runs if r["info"]["experiment_id"] in experiment_ids
                 and r["info"]["lifecycle_stage"] in stages and self._matches(filter_string, r["info"])]
        ascending = list(order_by or ()) == ["attributes.start_time ASC"]
        found.sort(key=lambda r: (_start(r) if ascending else -_start(r), r["info"]["run_id"]))
        if self.repeat_token:
            return found[:max_results], "same-token"
        offset = int(page_token or 0)
        page = found[offset:offset + max_results]
        more = offset + max_results < len(found)
        return page, str(offset + max_results) if more else None

    def _matches(self, filter_string: str, info: dict) -> bool:
        if not filter_string:
            return True
        if since := _SINCE.match(filter_string):
            return info["start_time"] >= int(since[1])
        if ids := _IDS.match(filter_string):
            if self.refuse_id_filter:
                raise MlflowApiError("Invalid clause(s) in filter string", "INVALID_PARAMETER_VALUE", 400)
            return info["run_id"] in {i.strip().strip("'") for i in ids[1].split(",")}
        raise AssertionError(f"a filter the crawler does not write: {filter_string!r}")

    def get_run(self, run_id: str) -> Optional[dict]:
        self.gets.append(run_id)
        return next((r for r in self.runs if r["info"]["run_id"] == run_id), None)


class Observer:
    """Records what a strategy tells (CrawlObserver)."""

    def __init__(self):
        self.pages: list[PageProgress] = []
        self.deleted: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def runs_page_done(self, page: PageProgress) -> None:
        self.pages.append(page)

    def run_deleted(self, run_id: str) -> None:
        self.deleted.append(run_id)

    def record_failed(self, what: str, problem: str) -> None:
        self.failed.append((what, problem))

    def seen(self, kind, count=1):
        pass

    def filter_out(self, kind, count):
        pass

    def warning(self, title, message):
        pass

    def failure(self, title, message):
        pass

    def info(self, title, message):
        pass


def crawl(strategy, mlflow: RunsMlflow, page_size: int = 2) -> tuple[list[str], Observer, RunReader]:
    observer = Observer()
    with ThreadPoolExecutor(max_workers=1) as executor:
        reader = RunReader(mlflow, page_size, executor, observer)
        ids = [run.run_id for run in strategy.runs(reader, observer)]
    return ids, observer, reader


# two experiments with runs started at 100..., one deleted run, one run in an experiment left out
RUNS = [run_json("a1", "1", 100), run_json("a2", "1", 200), run_json("a3", "1", 300), run_json("a4", "1", 300),
        run_json("b1", "2", 150), run_json("b2", "2", 250), run_json("gone", "1", 120, stage="deleted"),
        run_json("x1", "9", 500)]


def test_full_runs_pages_through_every_active_run_of_the_included_experiments():
    mlflow = RunsMlflow(RUNS)
    ids, observer, _ = crawl(FullRuns(["1", "2"], "ACTIVE_ONLY"), mlflow)
    assert sorted(ids) == ["a1", "a2", "a3", "a4", "b1", "b2"]
    assert {(e, f, v, o) for e, f, v, o, _ in mlflow.searches} == {(("1", "2"), "", "ACTIVE_ONLY", ())}
    assert [token for *_, token in mlflow.searches] == [None, "2", "4"]  # three pages of two
    assert observer.pages == []  # a full crawl does not tell pages


def test_full_runs_asks_for_at_most_a_hundred_experiments_per_search():
    experiments = [str(n) for n in range(250)]
    runs = [run_json(f"r{n}", str(n), n) for n in range(0, 250, 50)]
    mlflow = RunsMlflow(runs)
    ids, _, _ = crawl(FullRuns(experiments, "ALL"), mlflow, page_size=10)
    assert sorted(ids) == sorted(f"r{n}" for n in range(0, 250, 50))
    assert [len(e) for e, *_ in mlflow.searches] == [100, 100, 50]


def test_resumable_runs_go_oldest_first_and_tell_each_page():
    mlflow = RunsMlflow(RUNS)
    ids, observer, _ = crawl(ResumableRuns(["1", "2"], "ACTIVE_ONLY", None), mlflow)
    assert ids == ["a1", "b1", "a2", "b2", "a3", "a4"]
    assert {o for *_, o, _ in mlflow.searches} == {("attributes.start_time ASC",)}
    batch = ("1", "2")
    assert observer.pages == [PageProgress(batch, 150, ("b1",)), PageProgress(batch, 250, ("b2",)),
                              PageProgress(batch, 300, ("a3", "a4")), PageProgress(batch, None, (), True)]


def test_resumable_runs_go_on_from_the_checkpoint_without_repeating_a_run():
    """Experiment 3 was done; the batch of 1 and 2 had delivered up to start time 200 (a2 at it)."""
    runs = RUNS + [run_json("c1", "3", 50)]
    resume = ResumePlan(done_experiments=frozenset({"3"}), current_experiment_ids=("1", "2"),
                        start_time=200, ids_at_start_time=("a2",))
    mlflow = RunsMlflow(runs)
    ids, observer, _ = crawl(ResumableRuns(["1", "2", "3", "4"], "ACTIVE_ONLY", resume), mlflow)
    assert ids == ["b2", "a3", "a4"]  # a1, b1 before the checkpoint's time; a2 delivered at it
    assert [(e, f) for e, f, *_ in mlflow.searches] == [
        (("1", "2"), "attributes.start_time >= 200"), (("1", "2"), "attributes.start_time >= 200"),
        (("4",), "")]
    assert not any("3" in e for e, *_ in mlflow.searches)  # the finished experiment is not asked again
    assert [p.batch_done for p in observer.pages].count(True) == 2
    assert observer.pages[-1] == PageProgress(("4",), None, (), True)


def test_incremental_runs_read_new_renamed_refetched_and_deleted_runs():
    plan = IncrementalPlan(runs_started_since=250, refetch_run_ids=frozenset({"a1", "x1", "b2"}),
                           refetch_experiment_ids=frozenset({"2"}))
    mlflow = RunsMlflow(RUNS)
    ids, observer, reader = crawl(IncrementalRuns(plan, ["1", "2"], ["1", "2", "9"], "ACTIVE_ONLY", False), mlflow)
    # new since 250: b2, a3, a4; experiment 2 renamed: b1 too; refetched: a1 (x1 is not included)
    assert sorted(ids) == ["a1", "a3", "a4", "b1", "b2"] and len(ids) == len(set(ids))
    asked = [(e, f, v) for e, f, v, _, token in mlflow.searches if token is None]
    assert asked == [(("1", "2"), "attributes.start_time >= 250", "ACTIVE_ONLY"),
                     (("2",), "", "ACTIVE_ONLY"),
                     (("1", "2", "9"), "attributes.run_id IN ('a1', 'x1')", "ALL"),
                     (("1", "2", "9"), "", "DELETED_ONLY")]
    assert observer.deleted == ["gone"] and reader.point_lookups == 0


def test_incremental_runs_with_include_deleted_yield_the_deleted_run():
    plan = IncrementalPlan(runs_started_since=10_000)
    ids, observer, _ = crawl(IncrementalRuns(plan, ["1", "2"], ["1", "2", "9"], "ALL", True), RunsMlflow(RUNS))
    assert ids == ["gone"] and observer.deleted == []


def test_a_server_refusing_the_id_filter_is_asked_run_by_run():
    plan = IncrementalPlan(runs_started_since=10_000, refetch_run_ids=frozenset({"a1", "b1", "missing"}))
    mlflow = RunsMlflow(RUNS, refuse_id_filter=True)
    ids, _, reader = crawl(IncrementalRuns(plan, ["1", "2"], ["1", "2"], "ACTIVE_ONLY", False), mlflow)
    assert sorted(ids) == ["a1", "b1"]
    assert mlflow.gets == ["a1", "b1", "missing"] and reader.point_lookups == 3


def test_a_malformed_run_is_told_and_the_others_are_yielded():
    broken = {"info": {"run_id": "bad", "experiment_id": "1", "start_time": "yesterday", "lifecycle_stage": "active"},
              "data": {}}
    ids, observer, _ = crawl(FullRuns(["1"], "ACTIVE_ONLY"), RunsMlflow([broken, *RUNS]))
    assert sorted(ids) == ["a1", "a2", "a3", "a4"]
    assert [what for what, _ in observer.failed] == ["run bad"]


@pytest.mark.parametrize("strategy", [FullRuns(["1"], "ACTIVE_ONLY"), ResumableRuns(["1"], "ACTIVE_ONLY", None)],
                         ids=["full", "resumable"])
def test_a_listing_that_repeats_its_page_token_is_refused(strategy):
    mlflow = RunsMlflow(RUNS, repeat_token=True)
    with pytest.raises(PageLoopError, match=r"runs/search: the server answered the page token 'same-token' a second"):
        crawl(strategy, mlflow)
    assert [token for *_, token in mlflow.searches] == [None, "same-token"]  # its answer ends the listing
