"""Cron and backfill behaviour against a real MLflow server: incremental runs, stale-entity
removal, the safety threshold, one run at a time, and a crash mid-crawl."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from tests.catalog_server import CatalogServer
from tests.expectations import group_urn, model_urn, run_urn
from tests.mlflow_server import mlflow_server
from tests.seeding import new_run
from tests.waiting import wait_for

pytestmark = pytest.mark.server
CLI = [sys.executable, "-m", "connector.cli"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow-state")) as url:
        yield url


def recipe(url, tmp_path, out="out.json", incremental=True, sink=None, **state):
    return parse_recipe({
        "pipeline_name": "cron",
        "source": {"type": "mlflow", "config": {"tracking_uri": url, "incremental": incremental}},
        "sink": sink or {"type": "file", "config": {"filename": str(tmp_path / out)}},
        "state": {"path": str(tmp_path / "state.json"), **state}})


def emitted(path):
    by_urn = {}
    for r in json.loads(path.read_text()):
        by_urn.setdefault(r["entityUrn"], {})[r["aspectName"]] = r["aspect"]["json"]
    return by_urn


def ingest_ok(config: dict, tmp_path, name: str) -> dict:
    """Ingest with a recipe (less its sink) into tmp_path/name; the proposals by URN and aspect."""
    report = run_ingest(parse_recipe({**config, "sink": {"type": "file", "config": {
        "filename": str(tmp_path / name)}}}))
    assert report.ok, report.failures
    return emitted(tmp_path / name)


def test_incremental_emits_exactly_what_changed_and_removes_what_is_gone(server, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(server)
    exp = client.create_experiment("cron-exp")
    r1, r2 = new_run(client, exp, "r1"), new_run(client, exp, "r2")
    client.create_registered_model("cron_model")
    client.create_model_version("cron_model", f"runs:/{r1}/m", run_id=r1)
    client.set_registered_model_alias("cron_model", "champion", "1")
    client.create_registered_model("doomed_model")
    client.create_model_version("doomed_model", f"runs:/{r2}/m", run_id=r2)

    first = run_ingest(recipe(server, tmp_path, "full.json"))
    assert first.ok, first.failures
    assert first.mode == "full" and first.checkpoint_after["mode"] == "full"
    assert first.checkpoint_after["registry_updated_until"] == max(
        m.last_updated_timestamp for m in client.search_registered_models())
    assert run_urn(r1) in emitted(tmp_path / "full.json")

    r3 = new_run(client, exp, "r3")
    client.create_model_version("cron_model", f"runs:/{r3}/m", run_id=r3)
    client.set_registered_model_alias("cron_model", "champion", "2")
    client.delete_registered_model("doomed_model")
    client.delete_run(r2)

    # 3 removals of 12 entities is over the default 20% safety threshold of such a tiny store
    second = run_ingest(recipe(server, tmp_path, "incr.json", max_removal_ratio=0.5))
    assert second.ok, second.failures
    assert second.mode == "incremental"
    out = emitted(tmp_path / "incr.json")
    removed = {group_urn("doomed_model"), model_urn("doomed_model", 1), run_urn(r2)}
    assert set(out) == {run_urn(r3), model_urn("cron_model", 2), model_urn("cron_model", 1),
                        group_urn("cron_model")} | removed
    for urn in removed:
        assert out[urn] == {"status": {"removed": True}}
    assert out[model_urn("cron_model", 2)]["versionProperties"]["aliases"] == [{"versionTag": "champion"}]
    assert out[model_urn("cron_model", 1)]["versionProperties"]["aliases"] == []
    assert out[run_urn(r3)]["dataProcessInstanceOutput"]["outputEdges"] == [
        {"destinationUrn": model_urn("cron_model", 2)}]
    assert second.entities_removed == 3
    assert second.checkpoint_before == first.checkpoint_after
    assert second.as_dict()["entities_emitted"] == 7

    third = run_ingest(recipe(server, tmp_path, "noop.json"))
    assert third.ok and third.mode == "incremental"
    assert json.loads((tmp_path / "noop.json").read_text()) == []  # nothing changed, nothing sent


def test_safety_threshold_refuses_mass_removal(server, tmp_path_factory, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(server)  # entities of its own: the test does not depend on the others
    exp = client.create_experiment("mass-removal")
    for i in range(5):
        new_run(client, exp, f"mass-{i}")
    assert run_ingest(recipe(server, tmp_path, "out.json", incremental=False)).ok
    state_before = (tmp_path / "state.json").read_text()
    output_before = (tmp_path / "out.json").read_bytes()
    with mlflow_server(tmp_path_factory.mktemp("mlflow-empty")) as empty:
        report = run_ingest(recipe(empty, tmp_path, "out.json", incremental=False))
    assert not report.ok
    assert any(f["title"] == "Stale-entity removal refused" for f in report.failures)
    assert (tmp_path / "out.json").read_bytes() == output_before  # a failed run never replaces good output
    assert not list(tmp_path.glob(".out.json.*.tmp"))
    assert (tmp_path / "state.json").read_text() == state_before  # the checkpoint did not advance


def test_second_invocation_is_refused_and_a_dead_holders_lock_is_taken_over(server, tmp_path, write_recipe):
    path = write_recipe(json.dumps({
        "pipeline_name": "cron",
        "source": {"type": "mlflow", "config": {"tracking_uri": server, "incremental": True}},
        "sink": {"type": "file", "config": {"filename": str(tmp_path / "o.json")}},
        "state": {"path": str(tmp_path / "state.json")}}))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from connector.state.lock import PipelineLock; "
        f"PipelineLock({str(tmp_path / 'state.json')!r}, 'cron').acquire(); print('locked', flush=True); "
        "time.sleep(120)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        proc = subprocess.run(CLI + ["ingest", "-c", str(path)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 3, proc.stderr
        assert "already running" in proc.stderr and f"pid {holder.pid}" in proc.stderr
        assert time.monotonic() - started < 10 and not (tmp_path / "o.json").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    proc = subprocess.run(CLI + ["ingest", "-c", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    modes = []
    for flags in (["--full"], []):  # a nightly full crawl, then back to incremental
        report = tmp_path / "r.json"
        proc = subprocess.run(CLI + ["ingest", "-c", str(path), "--report-file", str(report), *flags],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        modes.append(json.loads(report.read_text())["mode"])
    assert modes == ["full", "incremental"]


def test_kill_9_mid_crawl_then_rerun_gives_the_clean_crawls_catalog(server, tmp_path, write_recipe):
    from mlflow import MlflowClient

    client = MlflowClient(server)
    exp = client.create_experiment("many-runs")
    for i in range(60):
        new_run(client, exp, f"bulk-{i}")

    def rest_recipe(url, name):
        return write_recipe(json.dumps({
            "pipeline_name": "crashy",
            "source": {"type": "mlflow", "config": {"tracking_uri": server}},
            "sink": {"type": "datahub-rest", "config": {
                "server": url, "max_batch_size": 20, "max_in_flight": 1, "retry_backoff_sec": 0.01,
                "dead_letter_file": str(tmp_path / f"{name}.dead.json")}},
            "state": {"path": str(tmp_path / "state.json")}}), f"{name}.yml")

    with CatalogServer() as clean:
        proc = subprocess.run(CLI + ["ingest", "-c", str(rest_recipe(clean.url, "clean"))],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    (tmp_path / "state.json").unlink()  # the crashing pipeline starts from nothing too

    with CatalogServer() as catalog:
        catalog.stall_first, catalog.stall_seconds = 10**6, 0.15  # slow, so the kill lands mid-crawl
        victim = subprocess.Popen(CLI + ["ingest", "-c", str(rest_recipe(catalog.url, "crashy"))],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(catalog.received) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        partial = len(catalog.received)
        assert 0 < partial < len(clean.received)
        assert not (tmp_path / "state.json").exists()  # no checkpoint from a killed run
        catalog.stall_first = 0
        proc = subprocess.run(CLI + ["ingest", "-c", str(rest_recipe(catalog.url, "crashy"))],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert catalog.problems == []
    assert catalog.store == clean.store


def test_resume_goes_on_from_the_last_checkpoint_without_resending(server, tmp_path, write_recipe):
    from mlflow import MlflowClient

    from connector.state.store import StateFile, expand

    client = MlflowClient(server)
    exp = client.create_experiment("backfill-exp")
    for i in range(50):
        new_run(client, exp, f"hist-{i}")

    def backfill_recipe(url, name, state="state.json"):
        return write_recipe(json.dumps({
            "pipeline_name": "backfill",
            "source": {"type": "mlflow", "config": {"tracking_uri": server, "runs_page_size": 10}},
            "sink": {"type": "datahub-rest", "config": {
                "server": url, "max_batch_size": 10, "max_in_flight": 1, "retry_backoff_sec": 0.01,
                "dead_letter_file": str(tmp_path / f"{name}.dead.json")}},
            "state": {"path": str(tmp_path / state)}}), f"{name}.yml")

    with CatalogServer() as clean:
        proc = subprocess.run(CLI + ["ingest", "-c", str(backfill_recipe(clean.url, "clean", "clean-state.json"))],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    with CatalogServer() as catalog:
        catalog.stall_first, catalog.stall_seconds = 10**6, 0.05
        recipe_path = backfill_recipe(catalog.url, "backfill")
        victim = subprocess.Popen(CLI + ["ingest", "-c", str(recipe_path)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        state = StateFile(tmp_path / "state.json")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait for a few checkpoints of runs
            backfill = state.load("backfill").backfill if (tmp_path / "state.json").exists() else None
            if backfill and sum(u.startswith("urn:li:dataProcessInstance:")
                                for u in expand(backfill["fingerprints"])) >= 20:
                break
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        backfill = state.load("backfill").backfill
        delivered_runs = {u for u in expand(backfill["fingerprints"]) if u.startswith("urn:li:dataProcessInstance:")}
        assert backfill["progress"]["current"]["start_time"] > 0
        before = len(catalog.received)
        catalog.stall_first = 0
        report_file = tmp_path / "resume-report.json"
        proc = subprocess.run(CLI + ["ingest", "-c", str(recipe_path), "--resume", "--report-file", str(report_file)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        resent = {r["entityUrn"] for r in catalog.received[before:]}
    assert json.loads(report_file.read_text())["mode"] == "resume"
    assert delivered_runs and not (delivered_runs & resent)  # what was delivered is not sent again
    assert catalog.problems == []
    assert catalog.store == clean.store  # and the catalog ends as after one clean crawl
    assert StateFile(tmp_path / "state.json").load("backfill").backfill is None


def test_a_corrupt_state_file_is_a_clear_failure_not_a_traceback(server, tmp_path, write_recipe):
    (tmp_path / "state.json").write_text("{not json")
    path = write_recipe(json.dumps({
        "pipeline_name": "cron", "state": {"path": str(tmp_path / "state.json")},
        "source": {"type": "mlflow", "config": {"tracking_uri": server}},
        "sink": {"type": "file", "config": {"filename": str(tmp_path / "o.json")}}}))
    proc = subprocess.run(CLI + ["ingest", "-c", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"state file {tmp_path / 'state.json'} cannot be read" in proc.stderr
    assert (tmp_path / "state.json").read_text() == "{not json"  # left for a person to look at


def test_incremental_safety_threshold_counts_per_kind():
    from connector.mapping.common import MappingContext
    from connector.mapping.version import MAPPING_VERSION
    from connector.state.store import PipelineState
    from connector.change_tracking.tracker import ChangeTracker

    known = {f"urn:li:dataProcessInstance:{i:032x}": "f" for i in range(5000)}
    known.update({group_urn(f"m{i}"): "f" for i in range(100)})
    previous = PipelineState(checkpoint={"runs_started_until": 1}, fingerprints=known,
                             mapping_version=MAPPING_VERSION)
    tracker = ChangeTracker.start(previous, True, "", 0, MappingContext())
    assert tracker.incremental
    tracker.finish_removals()  # the registry listing came back empty: every group looks gone
    assert len(tracker.removed) == 100 and len(tracker.removed) < 0.2 * len(known)
    refusal = tracker.removal_refused(0.2)
    assert refusal and "100 of 100 mlModelGroup" in refusal


def _clock_past_the_start_of(client, run_id: str) -> None:
    """Until the clock (MLflow's milliseconds) is past the run's start: a run created next starts later."""
    started = client.get_run(run_id).info.start_time
    wait_for(lambda: time.time() * 1000 > started, timeout=5, what="the clock to pass the run's start")


def test_include_deleted_incremental_marks_runs_deleted_since_the_checkpoint(server, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(server)
    exp = client.create_experiment("deleted-later")
    old = new_run(client, exp, "old")
    _clock_past_the_start_of(client, old)  # "new" starts later: the checkpoint's newest run
    new_run(client, exp, "new")
    config = {"pipeline_name": "with-deleted", "state": {"path": str(tmp_path / "state.json")},
              "source": {"type": "mlflow", "config": {"tracking_uri": server, "incremental": True,
                                                     "include_deleted": True, "incremental_lookback_sec": 0,
                                                     "experiment_pattern": {"allow": ["deleted-later"]}}}}

    assert run_urn(old) in ingest_ok(config, tmp_path, "full.json")
    client.delete_run(old)  # older than the checkpoint's newest run: not read again by start time
    out = ingest_ok(config, tmp_path, "incr.json")
    assert out[run_urn(old)]["status"] == {"removed": True}
    assert out[run_urn(old)]["dataProcessInstanceProperties"]["name"] == "old"


def test_deprecation_and_model_card_are_cleared_when_mlflow_drops_them(server, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(server)
    exp = client.create_experiment("cards")
    run_id = new_run(client, exp, "card-run")
    client.create_registered_model("carded", tags={"card.ethics.use_cases": "pricing"})
    client.create_model_version("carded", f"runs:/{run_id}/m", run_id=run_id, tags={"deprecated": "superseded"})
    config = {"pipeline_name": "cards", "state": {"path": str(tmp_path / "state.json")},
              "source": {"type": "mlflow", "config": {"tracking_uri": server, "incremental": True,
                                                     "model_pattern": {"allow": ["carded$"]}}}}

    first = ingest_ok(config, tmp_path, "first.json")[model_urn("carded", 1)]
    assert first["deprecation"]["deprecated"] is True
    assert first["mlModelEthicalConsiderations"] == {"useCases": ["pricing"]}
    client.delete_model_version_tag("carded", "1", "deprecated")
    client.delete_registered_model_tag("carded", "card.ethics.use_cases")
    second = ingest_ok(config, tmp_path, "second.json")[model_urn("carded", 1)]
    from tests.catalog_validation import validate_file
    validate_file(tmp_path / "second.json")  # cleared values are valid aspects
    assert second["deprecation"]["deprecated"] is False
    assert second["mlModelEthicalConsiderations"]["useCases"] == []
    assert model_urn("carded", 1) not in ingest_ok(config, tmp_path, "third.json")  # cleared once, then quiet


def test_renamed_experiment_moves_its_runs_to_the_new_container(server, tmp_path):
    from mlflow import MlflowClient

    from tests.expectations import exp_urn

    client = MlflowClient(server)
    exp = client.create_experiment("before-rename")
    old_run = new_run(client, exp, "trained-long-ago")
    _clock_past_the_start_of(client, old_run)
    other = client.create_experiment("rename-neighbour")
    new_run(client, other, "newer")  # the checkpoint's newest run: the renamed one is older
    config = {"pipeline_name": "renames", "state": {"path": str(tmp_path / "state.json")},
              "source": {"type": "mlflow", "config": {
                  "tracking_uri": server, "incremental": True, "incremental_lookback_sec": 0,
                  "experiment_pattern": {"allow": ["before-rename$", "after-rename$", "rename-neighbour$"]}}}}
    first = ingest_ok(config, tmp_path, "full.json")
    assert first[run_urn(old_run)]["container"] == {"container": exp_urn("before-rename")}
    client.rename_experiment(exp, "after-rename")
    out = ingest_ok(config, tmp_path, "incr.json")
    assert out[run_urn(old_run)]["container"] == {"container": exp_urn("after-rename")}
    assert out[exp_urn("before-rename")] == {"status": {"removed": True}}
    assert out[exp_urn("after-rename")]["containerProperties"]["name"] == "after-rename"


def test_new_urns_after_a_settings_change_are_not_taken_for_a_broken_crawl(server, tmp_path):
    """Switching dataset_urn (or upgrading to URNs by source) renames every dataset: the old URNs
    are removed, and the safety threshold sees the crawl found as many datasets as before."""
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(server)
    exp = mlflow.MlflowClient(server).create_experiment("renamed-datasets")
    frame = pd.DataFrame({"x": [1.0]})
    for i in range(12):
        with mlflow.start_run(experiment_id=exp, run_name=f"ds-{i}"):
            mlflow.log_input(mlflow.data.from_pandas(frame, source=f"s3://b/ds{i}.parquet", name=f"ds{i}"))
    base = {"pipeline_name": "dataset-urns", "state": {"path": str(tmp_path / "state.json")},
            "source": {"type": "mlflow", "config": {"tracking_uri": server, "dataset_urn": "name",
                                                   "experiment_pattern": {"allow": ["renamed-datasets$"]},
                                                   "model_pattern": {"allow": ["^$"]}}}}
    by_name = [u for u in ingest_ok(base, tmp_path, "by-name.json") if u.startswith("urn:li:dataset:")]
    assert len(by_name) == 12
    base["source"]["config"]["dataset_urn"] = "source"
    out = ingest_ok(base, tmp_path, "by-source.json")  # a full crawl: the mapping settings changed
    assert all(out[u] == {"status": {"removed": True}} for u in by_name)
    assert sum(1 for u in out if u.startswith("urn:li:dataset:") and u not in by_name) == 12


def test_a_proposal_the_catalog_refuses_does_not_hold_the_checkpoint_back(server, tmp_path):
    """A model version GMS refuses for good: the run fails (dead letter), but its checkpoint is
    saved without that version, so the next run is incremental and sends just that version again."""
    from mlflow import MlflowClient

    client = MlflowClient(server)
    exp = client.create_experiment("refused")
    run_id = new_run(client, exp, "refused-run")
    client.create_registered_model("refused_model")
    client.create_model_version("refused_model", f"runs:/{run_id}/m", run_id=run_id)
    refused = model_urn("refused_model", 1)
    config = {"pipeline_name": "refusals", "state": {"path": str(tmp_path / "state.json")},
              "source": {"type": "mlflow", "config": {"tracking_uri": server, "incremental": True,
                                                     "experiment_pattern": {"allow": ["refused$"]},
                                                     "model_pattern": {"allow": ["refused_model$"]}}}}
    with CatalogServer() as gms:
        sink = {"type": "datahub-rest", "config": {"server": gms.url, "dead_letter_file": str(tmp_path / "dead.json"),
                                                   "max_retries": 0}}
        gms.reject = lambda r: "refused" if r["entityUrn"] == refused and r["aspectName"] == "versionProperties" \
            else None
        first = run_ingest(parse_recipe({**config, "sink": sink}))
        assert not first.ok and first.dead_lettered == 1 and first.checkpoint_after is not None
        gms.reject = lambda r: None
        gms.received.clear()
        second = run_ingest(parse_recipe({**config, "sink": sink}))
    assert second.ok and second.mode == "incremental"
    assert {r["entityUrn"] for r in gms.received} == {refused}
