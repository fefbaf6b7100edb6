"""Run inside the Airflow venv (not by pytest): load a DAG file as Airflow would and describe its
DAGs, or run one DAG with `dag.test()` at given logical dates, writing what happened as JSON.

    python airflow_dag_runner.py describe DAG_FILE OUT_JSON
    python airflow_dag_runner.py run DAG_FILE OUT_JSON DAG_ID ISO_DATE [ISO_DATE ...]

AIRFLOW_HOME must be a temporary folder (sqlite metadata database there).
"""
import json
import runpy
import subprocess
import sys
from pathlib import Path


def dags_of(dag_file: str) -> dict:
    from airflow.sdk import DAG

    return {name: obj for name, obj in runpy.run_path(dag_file).items() if isinstance(obj, DAG)}


def describe(dag_file: str) -> dict:
    out = {}
    for dag_id, dag in dags_of(dag_file).items():
        out[dag_id] = {
            "max_active_runs": dag.max_active_runs, "catchup": dag.catchup,
            "timetable": type(dag.timetable).__name__, "schedule": [(t.expression, str(t.timezone))
                                                                   for t in getattr(dag.timetable, "timetables", [])],
            "params": sorted(dag.params.keys()),
            "tasks": {t.task_id: {"pool": t.pool, "retries": t.retries,
                                  "retry_exponential_backoff": bool(t.retry_exponential_backoff),
                                  "retry_delay_sec": t.retry_delay.total_seconds(),
                                  "max_retry_delay_sec": t.max_retry_delay.total_seconds(),
                                  "recipe_path": t.recipe_path} for t in dag.tasks},
        }
    return out


def run(dag_file: str, dag_id: str, dates: list) -> list:
    import pendulum
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True,
                   stdout=subprocess.DEVNULL)
    dag = dags_of(dag_file)[dag_id]
    runs = []
    for date in dates:
        dag_run = dag.test(logical_date=pendulum.parse(date))
        with create_session() as session:
            tis = {ti.task_id: {"state": str(getattr(ti.state, "value", ti.state)), "try_number": ti.try_number}
                   for ti in dag_run.get_task_instances(session=session)}
            for row in session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == dag_run.run_id,
                                                       XComModel.key == "return_value"):
                value = row.value
                tis[row.task_id]["xcom"] = json.loads(value) if isinstance(value, str) else value
        runs.append({"logical_date": date, "state": str(dag_run.state), "tasks": tis})
    return runs


if __name__ == "__main__":
    mode, dag_file, out = sys.argv[1:4]
    result = describe(dag_file) if mode == "describe" else run(dag_file, sys.argv[4], sys.argv[5:])
    Path(out).write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")
