"""Issue 18 acceptance for the catalog-backed state (`state.backend: datahub`), through the CLI against a
real `mlflow server` and a stand-in GMS that indexes timeseries values asynchronously (each value is
missed by the first read after its write): a machine whose clock is a day ahead, two machines running
one pipeline at once, a state server that is not GMS. After each, a run deleted in MLflow is removed
from the catalog and a following run with no change sends nothing."""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from connector.sinks.gms_client import GmsClient, GmsSettings
from connector.state.catalog_store import ASPECT, GmsStateStore
from connector.state.lock import lock_name
from tests.catalog_server import CatalogServer
from tests.expectations import run_urn
from tests.fake_http import ScriptedServer
from tests.mlflow_server import mlflow_server
from tests.seeding import new_run

pytestmark = pytest.mark.server

CLI = [sys.executable, "-m", "connector.cli"]
DAY_SEC = 24 * 3600
# the CLI on a machine whose clock is a day ahead
CLI_A_DAY_AHEAD = [sys.executable, "-c", "import runpy, time; real = time.time; time.time = lambda: real() + "
                   f"{DAY_SEC}; runpy.run_module('connector.cli', run_name='__main__', alter_sys=True)"]
CHECKPOINT_URN = "urn:li:dataJob:(urn:li:dataFlow:(datahub,fleet,prod),mlflow_catalog_state)"


def machine(root: Path, name: str, mlflow_url: str, gms_url: str) -> Path:
    """A working directory of its own (its own state.path, so no shared lock) with the pipeline's recipe."""
    workdir = root / name
    workdir.mkdir()
    recipe = {"pipeline_name": "fleet",
              "source": {"type": "mlflow", "config": {"tracking_uri": mlflow_url, "incremental": True}},
              "sink": {"type": "datahub-rest", "config": {"server": gms_url, "extra_headers": {"X-Machine": name}}},
              "state": {"backend": "datahub"}}
    (workdir / "recipe.yml").write_text(json.dumps(recipe), encoding="utf-8")
    return workdir


def start(workdir: Path, *args: str, cli: list = CLI) -> subprocess.Popen:
    return subprocess.Popen(cli + ["ingest", "-c", "recipe.yml", "--report-file", "report.json", *args],
                            cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, workdir: Path) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    return json.loads((workdir / "report.json").read_text(encoding="utf-8"))


def ingest(workdir: Path, *args: str, cli: list = CLI) -> dict:
    return finish(start(workdir, *args, cli=cli), workdir)


def sent_data(gms: CatalogServer, since: int) -> list[dict]:
    """Entity proposals (not the checkpoint's) the catalog took since `since`."""
    return [r for r in gms.received[since:] if r["entityType"] != "dataJob"]


def checkpoint_values(gms: CatalogServer) -> list[dict]:
    """Every checkpoint value GMS holds (indexed or not), newest timestampMillis first."""
    docs = gms.timeseries.get((CHECKPOINT_URN, ASPECT), {}).values()
    return sorted((d[0] for d in docs), key=lambda a: a["timestampMillis"], reverse=True)


def removal_then_quiet(gms: CatalogServer, client, run_id: str, remover: Path, quiet: Path) -> None:
    """Delete the run in MLflow: the next run removes it from the catalog, the one after sends nothing."""
    client.delete_run(run_id)
    before = len(gms.received)
    removing = ingest(remover)
    assert removing["mode"] == "incremental" and removing["entities_removed"] == 1
    assert gms.store[(run_urn(run_id), "status")] == {"removed": True}
    assert [(r["entityUrn"], r["aspectName"]) for r in sent_data(gms, before)] == [(run_urn(run_id), "status")]
    before = len(gms.received)
    quiet_run = ingest(quiet)
    assert quiet_run["mode"] == "incremental" and quiet_run["proposals"] == 0
    assert sent_data(gms, before) == []
    assert gms.problems == []


def test_a_machine_whose_clock_is_a_day_ahead_hides_no_later_save(tmp_path):
    from mlflow import MlflowClient

    with mlflow_server(tmp_path / "mlflow") as mlflow_url, CatalogServer() as gms:
        gms.index_after_reads = 1
        client = MlflowClient(mlflow_url)
        exp = client.create_experiment("fleet-exp")
        for i in range(3):
            new_run(client, exp, f"r{i}")
        ahead = machine(tmp_path, "ahead", mlflow_url, gms.url)
        on_time = machine(tmp_path, "on-time", mlflow_url, gms.url)

        first = ingest(ahead, cli=CLI_A_DAY_AHEAD)
        dated_ahead = checkpoint_values(gms)[0]  # after one per page of runs: a full crawl can resume
        assert first["mode"] == "full" and dated_ahead["runId"] == first["run_id"]
        assert dated_ahead["timestampMillis"] > (time.time() + DAY_SEC - 600) * 1000
        added = new_run(client, exp, "r-new")
        before = len(gms.received)
        second = ingest(on_time)
        assert second["mode"] == "incremental" and second["checkpoint_before"] == first["checkpoint_after"]
        assert {r["entityUrn"] for r in sent_data(gms, before)} == {run_urn(added)}
        newest = checkpoint_values(gms)[0]
        assert newest["runId"] == second["run_id"]  # on top, although written a day "earlier"
        assert newest["timestampMillis"] == dated_ahead["timestampMillis"] + 1

        before = len(gms.received)
        third = ingest(ahead, cli=CLI_A_DAY_AHEAD)  # r-new is not sent again
        assert third["mode"] == "incremental" and third["proposals"] == 0 and sent_data(gms, before) == []
        removal_then_quiet(gms, client, added, remover=on_time, quiet=ahead)


def test_two_machines_running_one_pipeline_at_once_lose_neither_run(tmp_path):
    """Machine a's full crawl is held while machine b's incremental run sends a new run and saves;
    a saves last, from its older starting checkpoint: b's work is merged in, not overwritten."""
    from mlflow import MlflowClient

    with mlflow_server(tmp_path / "mlflow") as mlflow_url, CatalogServer() as gms:
        gms.index_after_reads = 1
        client = MlflowClient(mlflow_url)
        exp = client.create_experiment("fleet-exp")
        for i in range(3):
            new_run(client, exp, f"r{i}")
        machine_a = machine(tmp_path, "a", mlflow_url, gms.url)
        machine_b = machine(tmp_path, "b", mlflow_url, gms.url)
        assert ingest(machine_a)["mode"] == "full"

        held, release = threading.Event(), threading.Event()

        def hold_machine_a(headers: dict, action: str) -> None:
            if headers.get("X-Machine") == "a" and action == "action=ingestProposalBatch" and not release.is_set():
                held.set()
                release.wait(120)

        gms.before_ingest = hold_machine_a
        slow = start(machine_a, "--full")  # crawls the runs, then waits to deliver them
        assert held.wait(120), slow.communicate(timeout=5)
        added = new_run(client, exp, "r-new")
        fast = ingest(machine_b)
        assert fast["mode"] == "incremental" and fast["proposals"] > 0
        release.set()
        slow_report = finish(slow, machine_a)
        assert slow_report["mode"] == "full"
        assert run_urn(added) not in {r["entityUrn"] for r in gms.received if r["systemMetadata"]["runId"]
                                      == slow_report["run_id"]}  # a's view is older than b's save
        state = GmsStateStore(GmsClient(GmsSettings(server=gms.url))).load("fleet")
        assert run_urn(added) in state.fingerprints  # what b sent is still known after a saved last
        assert state.checkpoint["run_id"] == slow_report["run_id"]
        assert state.checkpoint["merged_with"] == [fast["run_id"]]
        newest = checkpoint_values(gms)[0]
        made_by_b = {v["messageId"] for v in checkpoint_values(gms) if v["runId"] == fast["run_id"]}
        assert newest["runId"] == slow_report["run_id"] and made_by_b & set(json.loads(newest["config"])["basedOn"])

        removal_then_quiet(gms, client, added, remover=machine_b, quiet=machine_a)


@pytest.mark.parametrize("answer,why", [
    ((200, {"ok": True}, None), "is not DataHub GMS's configuration"),        # another service at that URL
    ((200, b"<html><body>Sign in</body></html>", None), "is not JSON"),     # a login page after a redirect
], ids=["json", "login-page"])
def test_a_state_server_that_answers_2xx_but_is_not_gms_is_refused(tmp_path, seeded_server, answer, why):
    mlflow_url, _, _ = seeded_server
    with CatalogServer() as gms, ScriptedServer([answer]) as not_gms:
        workdir = machine(tmp_path, "a", mlflow_url, gms.url)
        recipe = json.loads((workdir / "recipe.yml").read_text(encoding="utf-8"))
        recipe["state"].update(server=not_gms.url, path="state/state.json")
        (workdir / "recipe.yml").write_text(json.dumps(recipe), encoding="utf-8")

        check = subprocess.run(CLI + ["check", "-c", "recipe.yml"], cwd=workdir, capture_output=True, text=True,
                               timeout=120)
        proc = start(workdir)
        out, err = proc.communicate(timeout=120)
        report = json.loads((workdir / "report.json").read_text(encoding="utf-8"))
    assert check.returncode == 1 and "Traceback" not in check.stderr
    assert (f"[FAIL] state (datahub): HTTP 200: {not_gms.url}/config {why}: is the state server "
            "DataHub's GMS?") in check.stdout
    assert "[ok] catalog server" in check.stdout and "[ok] tracking server" in check.stdout
    assert proc.returncode == 1 and "Traceback" not in err
    [error] = [line for line in err.splitlines() if line.startswith("error:")]
    assert error.startswith("error: State store failed: reading the checkpoint of urn:li:dataJob:") and \
        error.endswith("is the state server DataHub's GMS?")
    assert report["proposals"] == 0 and gms.received == []  # nothing sent, nothing saved anywhere
    assert not any("ingestProposal" in r["path"] for r in not_gms.requests)
    assert [p.name for p in (workdir / "state").iterdir()] == [f"state.json.{lock_name('fleet')}.lock"]
