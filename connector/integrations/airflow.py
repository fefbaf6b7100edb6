"""Airflow DAGs from a folder of recipes (`pip install 'mlflow-catalog-connector[airflow]'`).

A file in Airflow's `dags/` folder:

    from connector.integrations.airflow import recipe_dags
    globals().update(recipe_dags("/opt/mlflow-catalog/recipes"))

One DAG per recipe (one MLflow server each), each with one ingest task; or, with `dag_id=`,
one DAG holding a task per recipe. Every DAG: the incremental schedule and the nightly full
crawl in one timetable, `max_active_runs=1` (so runs of a pipeline never overlap, on any worker),
retries with exponential backoff, each task in a pool of its GMS or tracking server.

The task runs the pipeline in-process (`run_ingest`): Airflow 3 already gives every task
instance a process of its own, and in-process the task gets the typed Report and the lock's
LockHeld directly, with no CLI, PATH or second virtualenv to keep in step with the DAG.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path
from typing import Any, Iterator, Optional

from airflow.sdk import DAG, BaseOperator, CronTriggerTimetable, MultipleCronTriggerTimetable, Param
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException, AirflowTaskTimeout

from connector.integrations.recipe_plan import PlannedRecipe, plan_folder, schedule_refusal

DEFAULT_START = datetime(2024, 1, 1, tzinfo=dt_timezone.utc)


def is_full_crawl_time(full_schedule: Optional[str], logical_date: Optional[datetime], timezone: str) -> bool:
    """Whether a run at `logical_date` is one the full-crawl cron fired (the timetable merges both
    crons into one run when they fire together, e.g. */15 and 0 3 at 03:00)."""
    if not full_schedule or logical_date is None:
        return False
    import pendulum
    from croniter import croniter  # Airflow's own cron library

    at = pendulum.instance(logical_date).in_timezone(timezone)
    return croniter(full_schedule, at.subtract(seconds=1)).get_next(datetime) == at


def _stop(token, reason: str) -> None:
    """What SIGTERM does in the CLI: every wait of the run ends; the first signal also interrupts
    what the main thread waits for (the run then dead-letters, reports and releases its lock)."""
    from connector.stopping import Stopped

    first = not token.requested()
    token.request(reason)
    if first:
        raise Stopped(reason)


@contextmanager
def _timeout_as_stop(timeout: Optional[timedelta], token) -> Iterator[dict]:
    """Airflow's `execution_timeout` is a SIGALRM whose handler raises AirflowTaskTimeout wherever
    the run is, and only then calls on_kill: the sink would neither dead-letter nor report. During
    the run the alarm stops it like SIGTERM instead (its handler restored afterwards); the caller
    then raises AirflowTaskTimeout itself, with the report in the XCom."""
    fired: dict = {"timed_out": False}
    if timeout is None or threading.current_thread() is not threading.main_thread():
        yield fired
        return

    def on_alarm(signum, frame) -> None:
        fired["timed_out"] = True
        _stop(token, f"execution_timeout ({timeout}) reached")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        yield fired
    finally:
        signal.signal(signal.SIGALRM, previous)


class MlflowCatalogIngestOperator(BaseOperator):
    """Ingest one recipe. Fails when the report says failure (after Airflow's retries), skips
    when another run of the pipeline holds its lock; the report (as JSON) is the XCom."""

    template_fields = ("recipe_path",)
    ui_color = "#d7ecf9"

    def __init__(self, *, recipe_path: str, full_schedule: Optional[str] = None, timezone: str = "UTC",
                 progress_interval_sec: float = 30.0, incremental_schedule: Optional[str] = None,
                 refusal: Optional[str] = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.recipe_path = recipe_path
        self.full_schedule = full_schedule
        self.incremental_schedule = incremental_schedule  # runs not at full-crawl time are incremental
        self.refusal = refusal  # the fleet guard's, from the folder's plan
        self.timezone = timezone
        self.progress_interval_sec = progress_interval_sec
        self._ingesting = False
        self._timeout_raised = False  # Airflow calls on_kill right after our AirflowTaskTimeout
        self._stop_token: Optional[Any] = None  # the StopToken of the run under way

    def execute(self, context) -> dict:
        from connector.pipeline import run_ingest
        from connector.config.recipe import RecipeError, load_recipe
        from connector.state.lock import LockHeld
        from connector.stopping import StopToken

        if self.refusal:  # no retry can help either
            raise AirflowFailException(f"{self.recipe_path}: {self.refusal}")
        try:
            recipe = load_recipe(self.recipe_path)
        except RecipeError as exc:  # no retry can help
            raise AirflowFailException(f"{self.recipe_path}: {exc}") from None
        name = recipe.pipeline_name or Path(self.recipe_path).stem
        if self._wants_full(context):
            recipe.source.config.incremental = False
        elif self.incremental_schedule:
            refused = schedule_refusal(recipe, self.incremental_schedule)
            if refused:
                raise AirflowFailException(f"{self.recipe_path}: {refused}")
        self.log.info("mlflow-catalog %s: %s of %s", name, "incremental run (a full crawl when no checkpoint is "
                      "usable)" if recipe.source.config.incremental else "full crawl", self.recipe_path)
        self._stop_token = StopToken()  # this run's: a timeout or kill ends its waits, no other task's
        self._ingesting = True
        try:
            with _timeout_as_stop(self.execution_timeout, self._stop_token) as alarm:
                report = run_ingest(recipe, progress_interval=self.progress_interval_sec, stop=self._stop_token)
        except RecipeError as exc:
            raise AirflowFailException(f"{self.recipe_path}: {exc}") from None
        except LockHeld as exc:
            raise AirflowSkipException(
                f"pipeline {name!r} is already running: {exc}; not starting a second run") from None
        finally:
            self._ingesting = False
        result = report.as_dict()
        self.log.info("mlflow-catalog %s: %s, mode %s, %d proposals, %d delivered, %.1f s", name,
                      result["status"], report.mode, report.proposals, report.delivered, report.duration_sec)
        for failure in report.failures[:5]:
            self.log.error("mlflow-catalog %s: %s: %s", name, failure["title"], failure["message"])
        if not report.ok:
            context["ti"].xcom_push(key="return_value", value=result)  # the report, also of a failed try
            first = report.failures[0] if report.failures else {"title": "failure", "message": ""}
            summary = (f"{report.failure_count} failure(s); first: {first['title']}: {first['message']}; "
                       f"{report.delivered} delivered, {report.dead_lettered} dead-lettered")
            if alarm["timed_out"]:
                self._timeout_raised = True
                raise AirflowTaskTimeout(f"pipeline {name!r} stopped at its execution_timeout ({summary})")
            raise AirflowException(f"pipeline {name!r} failed ({summary})")
        return result

    def _wants_full(self, context) -> bool:
        if (context.get("params") or {}).get("full"):
            return True
        return is_full_crawl_time(self.full_schedule, context.get("logical_date"), self.timezone)

    def on_kill(self) -> None:
        """SIGTERM (the task killed): stop like SIGTERM in the CLI, so the sink dead-letters what
        it still holds, the report becomes the XCom and no checkpoint of this run is saved. (After
        a timeout Airflow calls this too; the run has stopped by then, see _timeout_as_stop.)

        Airflow's SIGTERM handler stays installed after the task (in `airflow dags test`, while a
        retry waits its delay): SIGTERM then ends the process, as it would without that handler."""
        if self._ingesting and self._stop_token is not None:
            _stop(self._stop_token, "stopped by Airflow (task killed)")
        elif self._timeout_raised:
            self._timeout_raised = False
        else:
            raise SystemExit(128 + signal.SIGTERM)


def recipe_dags(recipes_dir: str | Path, *, dag_id: Optional[str] = None, dag_id_prefix: str = "mlflow_catalog",
                incremental_schedule: Optional[str] = "*/15 * * * *", full_schedule: Optional[str] = "0 3 * * *",
                timezone: str = "UTC", pool_by: str = "gms", retries: int = 3,
                retry_delay: timedelta = timedelta(minutes=1), max_retry_delay: timedelta = timedelta(minutes=30),
                progress_interval_sec: float = 30.0, start_date: datetime = DEFAULT_START,
                tags: tuple[str, ...] = ("mlflow-catalog",), **task_kwargs: Any) -> dict[str, DAG]:
    """The DAGs for every recipe of `recipes_dir`, by DAG id (for `globals().update(...)`).

    `dag_id`: one DAG with a task per recipe, instead of one DAG per recipe. `pool_by`: "gms"
    (the datahub-rest sink's server; file sinks fall back to the tracking server) or
    "tracking_server". Schedules are cron strings; either may be None. With an incremental schedule,
    a recipe without `incremental: true` and a state section is refused on its incremental runs (its
    task fails saying so); so are two recipes whose URNs would collide (recipe_plan's fleet guard).
    `task_kwargs` go to every task (e.g. `execution_timeout`, `queue`, `priority_weight`)."""
    plans = plan_folder(recipes_dir)
    dag_kwargs = dict(schedule=_timetable(incremental_schedule, full_schedule, timezone),
                      start_date=start_date, catchup=False, max_active_runs=1, tags=list(tags),
                      params={"full": Param(False, type="boolean", description="a full crawl, whatever the time")})
    task_defaults = dict(full_schedule=full_schedule, incremental_schedule=incremental_schedule, timezone=timezone,
                         progress_interval_sec=progress_interval_sec,
                         retries=retries, retry_delay=retry_delay, retry_exponential_backoff=2.0,
                         max_retry_delay=max_retry_delay, **task_kwargs)

    def task(plan: PlannedRecipe, dag: DAG) -> MlflowCatalogIngestOperator:
        return MlflowCatalogIngestOperator(task_id=f"ingest_{plan.name}", recipe_path=str(plan.path.resolve()),
                                           pool=plan.pool(pool_by), refusal=plan.refusal, dag=dag, **task_defaults)

    if dag_id is not None:
        dag = DAG(dag_id, description=f"mlflow-catalog: the recipes of {recipes_dir}", **dag_kwargs)
        for plan in plans:
            task(plan, dag)
        return {dag_id: dag}
    dags = {}
    for plan in plans:
        one = DAG(f"{dag_id_prefix}__{plan.name}", description=f"mlflow-catalog: {plan.path}", **dag_kwargs)
        task(plan, one)
        dags[one.dag_id] = one
    return dags


def _timetable(incremental: Optional[str], full: Optional[str], timezone: str):
    crons = [c for c in (incremental, full) if c]
    if not crons:
        return None  # triggered by hand only
    if len(crons) == 1:
        return CronTriggerTimetable(crons[0], timezone=timezone)
    return MultipleCronTriggerTimetable(*crons, timezone=timezone)
