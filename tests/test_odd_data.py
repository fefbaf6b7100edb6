"""Odd data (issue 19): an item whose fields are not what MLflow sends (tags as an object, a time of
"yesterday", a lone surrogate in a name) fails that record, named in the report; every other record
is delivered. A real `mlflow server` behind the fault proxy (tests/fault_proxy.py) rewriting one
answer, the stand-in GMS (testkit/catalog_server.py) taking the rest."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.catalog_server import CatalogServer
from tests.unattended_kit import CLI, assert_settled_once, file_sink, ingest, rest_sink, write_recipe

pytestmark = pytest.mark.server


def _first(items_key: str, change):
    def rewrite(answer: dict) -> dict:
        items = answer.get(items_key) or []
        chosen = next(i for i in items if change(i, dry_run=True))
        change(chosen)
        rewrite.chosen = chosen  # type: ignore[attr-defined]
        return answer
    return rewrite


def _tags_as_object(run: dict, dry_run: bool = False) -> bool:
    if not dry_run:
        run["data"]["tags"] = {"team": "growth"}
    return bool(run.get("data", {}).get("tags"))


def _created_yesterday(model: dict, dry_run: bool = False) -> bool:
    if not dry_run:
        model["creation_timestamp"] = "yesterday"
    return True


def _lone_surrogate(experiment: dict, dry_run: bool = False) -> bool:
    if not dry_run:
        experiment["name"] = "churn-\ud800-training"
    return experiment["name"] == "churn-training"


def _metric_past_any_double(run: dict, dry_run: bool = False) -> bool:
    if not dry_run:
        run["data"]["metrics"][0]["value"] = 10 ** 400
    return bool(run.get("data", {}).get("metrics")) and bool(run.get("data", {}).get("tags"))


def _bad_param_hidden_by_a_later_one(run: dict, dry_run: bool = False) -> bool:
    if not dry_run:  # the bulk read of a run's params kept only the last "lr": the bad one was not seen
        run["data"]["params"] = [{"key": "lr", "value": True}, {"key": "lr", "value": "0.1"}]
    return bool(run.get("data", {}).get("tags"))


def _received_urns(catalog: CatalogServer) -> set[str]:
    return {r["entityUrn"] for r in catalog.received}


@pytest.fixture(scope="module")
def clean_urns(seeded_server, tmp_path_factory) -> set[str]:
    url, _, _ = seeded_server
    tmp_path = tmp_path_factory.mktemp("clean")
    with CatalogServer() as catalog:
        proc, report, _ = ingest(write_recipe(tmp_path, url, rest_sink(catalog.url, tmp_path / "dead.json")),
                                 tmp_path)
    assert proc.returncode == 0 and report["failed_records"] == 0, proc.stderr
    return _received_urns(catalog)


@pytest.mark.parametrize("endpoint,items_key,change,what,problem,missing", [
    ("runs/search", "runs", _tags_as_object, "run {id}", "data.tags is an object, not a list",
     ("urn:li:dataProcessInstance:",)),
    ("registered-models/search", "registered_models", _created_yesterday, "registered model {name}",
     "creation_timestamp is 'yesterday', not a time in milliseconds", ("urn:li:mlModelGroup:", "urn:li:mlModel:")),
    ("experiments/search", "experiments", _lone_surrogate, "experiment {experiment_id}",
     "name holds a character that is not valid text (a lone surrogate, position 6)",
     ("urn:li:container:", "urn:li:dataProcessInstance:", "urn:li:dataset:")),
    ("runs/search", "runs", _metric_past_any_double, "run {id}",
     "data.metrics[0].value is a number too large for a metric (10000000000000000000...)",
     ("urn:li:dataProcessInstance:",)),
    ("runs/search", "runs", _bad_param_hidden_by_a_later_one, "run {id}", "data.params[0].value is true/false, not a string",
     ("urn:li:dataProcessInstance:",)),
], ids=["tags-as-object", "time-yesterday", "lone-surrogate", "metric-past-any-double", "bad-param-hidden"])
def test_a_malformed_field_fails_its_record_and_the_others_are_delivered(proxy, tmp_path, clean_urns, endpoint,
                                                                        items_key, change, what, problem, missing):
    rewrite = _first(items_key, change)
    proxy.add(endpoint, "rewrite", rewrite=rewrite, times=1)
    dead = tmp_path / "dead.json"
    with CatalogServer() as catalog:
        proc, report, _ = ingest(write_recipe(tmp_path, proxy.url, rest_sink(catalog.url, dead)), tmp_path)
    chosen = rewrite.chosen  # type: ignore[attr-defined]
    name = what.format(id=chosen.get("info", {}).get("run_id"), name=chosen.get("name"),
                       experiment_id=chosen.get("experiment_id"))
    assert proc.returncode == 1
    [failure] = report["failures"]
    assert failure == {"title": "Record not read",
                       "message": f"{name}: {problem}; not delivered, the other records are"}
    assert report["failed_records"] == 1 and report["failed_record_names"] == [name]
    # one line per failure on stderr, no traceback, no internal names
    assert proc.stderr.strip().splitlines() == [f"error: Record not read: {failure['message']}"]
    assert "unexpected" not in proc.stdout.lower() and "Error" not in failure["message"]
    # nothing else lost: every other entity is in the catalog, nothing dead-lettered
    assert_settled_once(report, catalog, dead)
    assert report["dead_lettered"] == 0 and report["delivered"] == report["proposals"] > 20
    received = _received_urns(catalog)
    gone = clean_urns - received
    assert received <= clean_urns and gone, (chosen, report["crawled"], report["entities"])
    assert all(urn.startswith(missing) for urn in gone), sorted(gone)
    assert len(gone) <= len(clean_urns) // 2


def _damage(state_file: Path, change) -> bytes:
    data = json.loads(state_file.read_text(encoding="utf-8"))
    [entry] = data["pipelines"].values()
    change(entry)
    state_file.write_text(json.dumps(data), encoding="utf-8")
    return state_file.read_bytes()


@pytest.mark.parametrize("change,problem", [
    (lambda e: e["checkpoint"].update(runs_started_until="yesterday"),
     "'checkpoint.runs_started_until' is 'yesterday', not a time in milliseconds"),
    (lambda e: e.update(open_runs=[{"run": 1}]), "'open_runs' holds a value that is not a run id"),
], ids=["checkpoint-time", "open-runs"])
def test_a_malformed_checkpoint_is_a_state_error_with_the_remedy(proxy, tmp_path, change, problem):
    out, state = tmp_path / "out.json", tmp_path / "state.json"
    recipe = write_recipe(tmp_path, proxy.url, file_sink(out), pipeline="nightly", state={"path": str(state)},
                          incremental=True)
    proc, report, _ = ingest(recipe, tmp_path)
    assert proc.returncode == 0, proc.stderr
    damaged = _damage(state, change)
    proc, report, _ = ingest(recipe, tmp_path)  # the report file is written (ingest reads it)
    assert proc.returncode == 1
    message = (f"state file {state}, pipeline 'nightly': the entry {problem}; move the file away (the next run "
               "is then a full crawl)")
    assert report["failures"] == [{"title": "State store failed", "message": message}]
    assert proc.stderr.strip().splitlines() == [f"error: State store failed: {message}"]
    assert state.read_bytes() == damaged  # left as it is, for whoever looks into it


def test_the_report_file_is_written_on_every_failure(proxy, tmp_path):
    from connector.state.lock import PipelineLock

    state = tmp_path / "state.json"
    recipe = write_recipe(tmp_path, proxy.url, file_sink(tmp_path / "out.json"), pipeline="nightly",
                          state={"path": str(state)})
    with PipelineLock(state, "nightly"):  # another run holds the pipeline: exit 3
        report_file = tmp_path / "locked.json"
        proc = subprocess.run(CLI + ["ingest", "-c", str(recipe), "--report-file", str(report_file)],
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    [failure] = json.loads(report_file.read_text(encoding="utf-8"))["failures"]
    assert failure["title"] == "Already running" and "is already running" in failure["message"]
    bad = tmp_path / "bad.yml"
    bad.write_text("source: {type: mlflow, config: {tracking_uri: http://x:5000, include_runz: true}}\n"
                   "sink: {type: file, config: {filename: out.json}}\n", encoding="utf-8")
    report_file = tmp_path / "bad.json"
    proc = subprocess.run(CLI + ["ingest", "-c", str(bad), "--report-file", str(report_file)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    written = json.loads(report_file.read_text(encoding="utf-8"))
    assert written["status"] == "failure" and "include_runz" in written["failures"][0]["message"]


def test_a_refused_checkpoint_is_titled_without_internal_names(seeded_server, tmp_path):
    """The catalog refusing the checkpoint during a resumable crawl: the failure's title is the
    state's, no class name of ours; every proposal is settled."""
    url, _, _ = seeded_server
    dead = tmp_path / "dead.json"
    with CatalogServer() as catalog:
        catalog.reject = lambda r: ("checkpoints are read-only here" if r["aspectName"] == "datahubIngestionCheckpoint"
                                    else None)
        recipe = write_recipe(tmp_path, url, rest_sink(catalog.url, dead), pipeline="nightly",
                              state={"backend": "datahub"})
        proc, report, _ = ingest(recipe, tmp_path)
    assert proc.returncode == 1
    titles = [f["title"] for f in report["failures"]]
    assert titles and set(titles) <= {"State store failed", "State not saved"}, titles
    assert all("checkpoints are read-only here" in f["message"] for f in report["failures"])
    assert "_Refused" not in proc.stdout + proc.stderr and "Refused" not in " ".join(titles)
    assert_settled_once(report, catalog, dead)


def test_a_malformed_checkpoint_in_the_catalog_is_a_state_error_with_the_remedy():
    from connector.sinks.gms_client import GmsClient, GmsSettings
    from connector.state.catalog_store import GmsStateStore
    from connector.state.store import PipelineState, StateError

    with CatalogServer() as gms:
        store = GmsStateStore(GmsClient(GmsSettings(server=gms.url)))
        store.save("nightly", PipelineState(checkpoint={"runs_started_until": "yesterday", "run_id": "r1"}))
        with pytest.raises(StateError) as caught:
            store.load("nightly")
    assert str(caught.value) == (
        f"{gms.url} {store.urn('nightly')}: the checkpoint 'checkpoint.runs_started_until' is 'yesterday', not a "
        "time in milliseconds; delete that checkpoint, or use another pipeline_name (the next run is then a full "
        "crawl)")
