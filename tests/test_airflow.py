"""The DAG factory on real Airflow 3 (in .venv-airflow, `make install-airflow`): a DAG file as a
user drops it into dags/, run with dag.test() in a temporary AIRFLOW_HOME on sqlite, against the
test mlflow server and the stand-in GMS."""
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from connector.sinks.file import read_proposals
from connector.state.lock import PipelineLock
from tests.catalog_server import CatalogServer
from tests.catalog_validation import validate_file
from tests.mlflow_server import QUIET_ENV, free_port

pytestmark = [pytest.mark.airflow, pytest.mark.server]
ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_PYTHON = Path(os.environ.get("AIRFLOW_VENV", ROOT / ".venv-airflow")) / "bin" / "python"
RUNNER = Path(__file__).with_name("airflow_dag_runner.py")
# 02:45 the first run (full: no checkpoint yet), 03:00 the nightly full crawl, 03:15 incremental
RUN_AT = ["2026-01-01T02:45:00+00:00", "2026-01-01T03:00:00+00:00", "2026-01-01T03:15:00+00:00"]
DAG_FILE = """\
from datetime import timedelta

from connector.integrations.airflow import recipe_dags

globals().update(recipe_dags({recipes!r}{options}))
"""


def start_airflow(mode: str, dag_file: Path, *args: str, home: Path) -> tuple[subprocess.Popen, Path]:
    """The runner in the Airflow venv, with a temporary AIRFLOW_HOME (sqlite) and its output file."""
    if not AIRFLOW_PYTHON.exists():
        pytest.fail(f"no Airflow venv at {AIRFLOW_PYTHON.parent.parent}: run `make install-airflow`, "
                    "or leave these tests out with -m 'not airflow'")
    out = home / f"{mode}.json"
    env = {**os.environ, **QUIET_ENV, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_FOLDER": str(dag_file.parent)}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.Popen([str(AIRFLOW_PYTHON), str(RUNNER), mode, str(dag_file), str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=home)
    return proc, out


def airflow(mode: str, dag_file: Path, *args: str, home: Path) -> tuple[object, str]:
    proc, out = start_airflow(mode, dag_file, *args, home=home)
    log, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, log[-10000:]
    return json.loads(out.read_text()), log


def write(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def fleet_recipes(folder: Path, mlflow_url: str, gms_url: str, work: Path) -> None:
    """team-a: file sink, no state (refused on the incremental schedule, a full crawl at night); team-b: REST
    sink, incremental, its state in the catalog; broken: an MLflow that does not answer; busy: a pipeline
    whose lock the test holds."""
    source = {"type": "mlflow", "config": {"tracking_uri": mlflow_url, "incremental": True}}
    write(folder / "team-a.yml", {"pipeline_name": "team-a", "source": {"type": "mlflow", "config": {
        "tracking_uri": mlflow_url}}, "sink": {"type": "file", "config": {"filename": str(work / "team-a.json")}}})
    write(folder / "team-b.yml", {"pipeline_name": "team-b", "source": source,
                                  "sink": {"type": "datahub-rest", "config": {"server": gms_url}},
                                  "state": {"backend": "datahub", "path": str(work / "state" / "team-b.json")}})
    write(folder / "broken.yml", {"pipeline_name": "broken", "source": {"type": "mlflow", "config": {
        "tracking_uri": f"http://127.0.0.1:{free_port()}", "max_retries": 0, "incremental": True,
        "platform_instance": "elsewhere"}},  # another server: the fleet guard wants its own instance
        "sink": {"type": "file", "config": {"filename": str(work / "broken.json")}},
        "state": {"path": str(work / "state" / "broken.json")}})
    write(folder / "busy.yml", {"pipeline_name": "busy", "source": source,
                                "sink": {"type": "file", "config": {"filename": str(work / "busy.json")}},
                                "state": {"path": str(work / "state" / "busy.json")}})


@pytest.fixture(scope="module")
def fleet(seeded_server, tmp_path_factory):
    """One DAG of the four recipes, run three times (02:45, 03:00, 03:15) in one Airflow process."""
    url, _, _ = seeded_server
    root = tmp_path_factory.mktemp("airflow-fleet")
    with CatalogServer() as gms:
        fleet_recipes(root / "recipes", url, gms.url, root / "work")
        dag_file = write(root / "dags" / "mlflow_catalog.py", DAG_FILE.format(
            recipes=str(root / "recipes"), options=", dag_id='mlflow_catalog_fleet', retries=1, "
                                                   "retry_delay=timedelta(seconds=1), progress_interval_sec=0"))
        with PipelineLock(root / "work" / "state" / "busy.json", "busy"):
            runs, log = airflow("run", dag_file, "mlflow_catalog_fleet", *RUN_AT, home=root)
    return {"runs": runs, "log": log, "work": root / "work", "received": gms.received, "problems": gms.problems,
            "mlflow": url, "gms": gms.url, "root": root}


@pytest.fixture(scope="module")
def reference(seeded_server, tmp_path_factory):
    """What the CLI's pipeline makes of the seeded store, to compare the DAG's outputs with."""
    out = tmp_path_factory.mktemp("airflow-reference") / "ref.json"
    report = run_ingest(parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": seeded_server[0]}},
                                      "sink": {"type": "file", "config": {"filename": str(out)}}}))
    assert report.ok, report.failures
    return strip([{**r, "aspect": r["aspect"]["json"]} for r in read_proposals(str(out))])


def strip(records):
    return sorted((r["entityUrn"], r["aspectName"], json.dumps(r["aspect"], sort_keys=True)) for r in records)


def task(fleet, run: int, name: str) -> dict:
    return fleet["runs"][run]["tasks"][f"ingest_{name}"]


def test_a_dag_of_two_recipes_delivers_what_the_pipeline_makes(fleet, reference):
    a, b = task(fleet, 1, "team-a"), task(fleet, 0, "team-b")  # team-a: no state, crawled at 03:00 only
    assert (a["state"], b["state"]) == ("success", "success")
    records = validate_file(fleet["work"] / "team-a.json")  # acryl-datahub's check of the file
    assert strip([{**r, "aspect": r["aspect"]["json"]} for r in records]) == reference
    first_b = [r for r in fleet["received"] if r["systemMetadata"]["runId"] == b["xcom"]["run_id"]]
    assert strip([r for r in first_b if r["entityType"] != "dataJob"]) == reference
    assert fleet["problems"] == []
    # the report is the task's XCom
    assert a["xcom"]["status"] == b["xcom"]["status"] == "success"
    assert a["xcom"]["proposals"] == b["xcom"]["delivered"] == len(reference)
    assert a["xcom"]["pipeline_name"] == "team-a" and a["xcom"]["output"] == str(fleet["work"] / "team-a.json")


def test_nightly_full_crawl_and_incremental_runs_continue_the_checkpoint(fleet, reference):
    reports = [task(fleet, i, "team-b")["xcom"] for i in range(3)]
    assert [r["mode"] for r in reports] == ["full", "full", "incremental"]  # 02:45 first, 03:00 nightly, 03:15
    assert reports[1]["checkpoint_before"] == reports[0]["checkpoint_after"]  # kept in the catalog
    assert reports[2]["checkpoint_before"] == reports[1]["checkpoint_after"]
    assert reports[1]["proposals"] == len(reference) and reports[2]["proposals"] == 0  # nothing changed since
    assert [task(fleet, i, "team-a")["state"] for i in range(3)] == ["failed", "success", "failed"]  # no state
    assert task(fleet, 1, "team-a")["xcom"]["proposals"] == len(reference)
    assert not (fleet["work"] / "state" / "team-b.json").exists()  # team-b's state is not a local file


def test_a_failed_run_fails_its_task_after_its_retries_with_the_report(fleet):
    for run in fleet["runs"]:
        broken = run["tasks"]["ingest_broken"]
        assert broken["state"] == "failed" and broken["try_number"] == 2  # retries=1
        assert broken["xcom"]["status"] == "failure"
        assert any("127.0.0.1" in f["message"] for f in broken["xcom"]["failures"])
        assert run["state"] == "failed"
    assert "pipeline 'broken' failed" in fleet["log"]


def test_a_held_lock_skips_the_task(fleet):
    assert [run["tasks"]["ingest_busy"]["state"] for run in fleet["runs"]] == ["skipped"] * 3
    assert "pipeline 'busy' is already running" in fleet["log"]
    assert not (fleet["work"] / "busy.json").exists()


def test_progress_and_summary_lines_are_in_the_task_log(fleet):
    assert "[progress] " in fleet["log"] and "proposals=" in fleet["log"]
    assert "mlflow-catalog team-b: incremental run (a full crawl when no checkpoint is usable) of" in fleet["log"]
    assert "mlflow-catalog team-a: incremental" not in fleet["log"]
    assert "team-a.yml: the recipe runs on the incremental schedule (*/15 * * * *) but has no state" in fleet["log"]
    assert "mlflow-catalog team-b: full crawl of" in fleet["log"]  # 03:00, the nightly full crawl
    assert "mlflow-catalog team-b: success, mode full," in fleet["log"]


def test_default_layout_one_dag_per_recipe_with_pools_retries_and_both_schedules(fleet):
    root = fleet["root"]
    dag_file = write(root / "dags-default" / "mlflow_catalog.py", DAG_FILE.format(
        recipes=str(root / "recipes"), options=""))
    dags, _ = airflow("describe", dag_file, home=root)
    assert sorted(dags) == ["mlflow_catalog__broken", "mlflow_catalog__busy", "mlflow_catalog__team-a",
                            "mlflow_catalog__team-b"]
    mlflow_host = fleet["mlflow"].removeprefix("http://").replace(":", "_")
    gms_host = fleet["gms"].removeprefix("http://").replace(":", "_")
    for dag_id, dag in dags.items():
        assert dag["max_active_runs"] == 1 and dag["catchup"] is False
        assert dag["timetable"] == "MultipleCronTriggerTimetable" and dag["params"] == ["full"]
        [(task_id, t)] = dag["tasks"].items()
        assert task_id == "ingest_" + dag_id.split("__")[1]
        assert (t["retries"], t["retry_exponential_backoff"], t["retry_delay_sec"], t["max_retry_delay_sec"]) == (
            3, True, 60.0, 1800.0)
    assert dags["mlflow_catalog__team-a"]["tasks"]["ingest_team-a"]["pool"] == f"mlflow_catalog_mlflow_{mlflow_host}"
    assert dags["mlflow_catalog__team-b"]["tasks"]["ingest_team-b"]["pool"] == f"mlflow_catalog_gms_{gms_host}"
    assert dags["mlflow_catalog__team-a"]["schedule"] == [["*/15 * * * *", "UTC"], ["0 3 * * *", "UTC"]]


def test_a_killed_task_stops_cleanly_and_dead_letters_what_was_not_delivered(seeded_server, tmp_path):
    """SIGTERM (Airflow killing the task, or its timeout) while the sink still holds proposals."""
    with CatalogServer() as gms:
        gms.stall_first, gms.stall_seconds = 10**6, 0.3  # slow deliveries: the signal lands mid-run
        write(tmp_path / "recipes" / "slow.yml", {
            "pipeline_name": "slow", "source": {"type": "mlflow", "config": {"tracking_uri": seeded_server[0]}},
            "sink": {"type": "datahub-rest", "config": {"server": gms.url, "max_batch_size": 10, "max_in_flight": 1,
                                                        "dead_letter_file": str(tmp_path / "dead.json")}}})
        dag_file = write(tmp_path / "dags" / "mlflow_catalog.py", DAG_FILE.format(
            recipes=str(tmp_path / "recipes"), options=", dag_id='slow', retries=0, incremental_schedule=None"))
        proc, out = start_airflow("run", dag_file, "slow", RUN_AT[0], home=tmp_path)
        try:
            deadline = time.monotonic() + 300
            while not gms.received and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            log, _ = proc.communicate(timeout=300)
        finally:
            proc.kill()
        delivered = len(gms.received)
    assert proc.returncode == 0, log[-10000:]
    [run] = json.loads(out.read_text())
    slow = run["tasks"]["ingest_slow"]
    assert slow["state"] == "failed"
    report = slow["xcom"]
    assert report["failures"][0]["title"] == "Interrupted"
    dead = read_proposals(str(tmp_path / "dead.json"))
    assert 0 < delivered < report["proposals"]
    assert report["delivered"] == delivered and report["dead_lettered"] == len(dead) == report["proposals"] - delivered


def test_a_timed_out_task_stops_cleanly_and_no_secret_reaches_its_xcom_or_log(seeded_server, tmp_path, monkeypatch):
    """execution_timeout shorter than the crawl: the run stops like SIGTERM (dead letters, the report
    as XCom, the lock released) and the task fails as timed out. Beside it, a task whose MLflow echoes
    the credentials it was sent (basic auth from a tracking URI in the environment) in an error."""
    from tests.hostile_servers import EchoProxy
    from tests.test_secret_sweep import SECRETS, _env

    with CatalogServer() as gms, EchoProxy(seeded_server[0], echo="experiments/search") as hostile:
        gms.stall_first, gms.stall_seconds = 10**6, 1.0  # 1 s per batch of 5: the crawl outlasts the timeout
        write(tmp_path / "recipes" / "slow.yml", {
            "pipeline_name": "slow", "source": {"type": "mlflow", "config": {"tracking_uri": seeded_server[0]}},
            "sink": {"type": "datahub-rest", "config": {"server": gms.url, "max_batch_size": 5, "max_in_flight": 1,
                                                        "dead_letter_file": str(tmp_path / "dead.json")}},
            "state": {"path": str(tmp_path / "state" / "slow.json")}})
        write(tmp_path / "recipes" / "hostile.yml", {
            "pipeline_name": "hostile", "source": {"type": "mlflow", "config": {"tracking_uri": "${TRACKING}"}},
            "sink": {"type": "file", "config": {"filename": str(tmp_path / "hostile.json")}}})
        for name, value in _env(hostile.url).items():
            monkeypatch.setenv(name, value)
        dag_file = write(tmp_path / "dags" / "mlflow_catalog.py", DAG_FILE.format(
            recipes=str(tmp_path / "recipes"), options=", dag_id='timeouts', retries=0, incremental_schedule=None, "
                                                       "execution_timeout=timedelta(seconds=8)"))
        [run], log = airflow("run", dag_file, "timeouts", RUN_AT[0], home=tmp_path)
        delivered = len(gms.received)
    slow, bad = run["tasks"]["ingest_slow"], run["tasks"]["ingest_hostile"]
    assert slow["state"] == bad["state"] == "failed"
    report = slow["xcom"]
    assert report["failures"][0]["title"] == "Interrupted"
    assert "pipeline 'slow' stopped at its execution_timeout" in log
    dead = read_proposals(str(tmp_path / "dead.json"))
    assert 0 < delivered < report["proposals"]
    assert report["delivered"] == delivered and report["dead_lettered"] == len(dead) == report["proposals"] - delivered
    with PipelineLock(tmp_path / "state" / "slow.json", "slow"):  # released by the stopped run
        pass
    assert not (tmp_path / "state" / "slow.json").exists()  # no checkpoint of a stopped run
    # the hostile server echoed the credentials; neither the XCom nor the task log holds them
    assert any("cannot serve what you sent" in f["message"] for f in bad["xcom"]["failures"])
    assert "cannot serve what you sent" in log
    for name, text in {"xcom": json.dumps(bad["xcom"]), "log": log}.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in the {name}"


def test_sigterm_while_a_retry_waits_ends_airflow_dags_test(tmp_path):
    """A server that is down: the try fails in seconds (bounded HTTP retries), then Airflow waits for
    the retry; SIGTERM in that wait ends the process instead of being swallowed by Airflow's handler."""
    write(tmp_path / "recipes" / "down.yml", {"pipeline_name": "down", "source": {"type": "mlflow", "config": {
        "tracking_uri": f"http://127.0.0.1:{free_port()}"}},
        "sink": {"type": "file", "config": {"filename": str(tmp_path / "down.json")}}})
    dag_file = write(tmp_path / "dags" / "mlflow_catalog.py", DAG_FILE.format(
        recipes=str(tmp_path / "recipes"), options=", dag_id='down', retries=2, retry_delay=timedelta(minutes=10), "
                                                   "incremental_schedule=None"))
    proc, _ = start_airflow("run", dag_file, "down", RUN_AT[0], home=tmp_path)
    try:
        lines, deadline = [], time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if not line or "up_for_retry" in line:
                break
        assert "up_for_retry" in lines[-1], "".join(lines)[-5000:]
        assert any("did not answer experiments/search" in line for line in lines)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
