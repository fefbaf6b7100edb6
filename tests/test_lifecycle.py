"""Lifecycle gaps that would leave the catalog wrong for good (issue 18), each through the CLI
(`mlflow-catalog ingest` against a real `mlflow server`, the REST sink to the stand-in GMS), each
checked in the catalog afterwards (the stand-in GMS's latest aspect values):

- a removal GMS refused stays pending in the state and is sent again;
- a listing that finds none of what the state knows removes nothing, at any size (a person
  confirms a real mass deletion with --allow-mass-removal); a single deletion still removes;
- empty pages that carry a new token are followed, not called a page loop;
- a failed run that delivered part of its proposals has its entities sent again by the next run
  (MLflow may revert exactly those values in between);
- a proposal GMS refuses for good, of any kind (here a run and its dataset), does not hold the
  checkpoint back and is sent again by the next run;
- a state saved with another mapping version makes the next run a full crawl that re-sends.

Each test keeps to entities of its own (experiment and model filters) on one shared server."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.catalog_server import CatalogServer
from tests.expectations import exp_urn, group_urn, model_urn, run_urn
from tests.seeding import new_run
from tests.unattended_kit import dead_letters, ingest, rest_sink, write_recipe

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.mlflow_server import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow-lifecycle")) as url:
        yield url


@pytest.fixture
def gms():
    with CatalogServer() as catalog:
        yield catalog


def client(url: str):
    from mlflow import MlflowClient

    return MlflowClient(url)


def recipe(tmp_path: Path, url: str, gms: CatalogServer, name: str, registry_uri: str | None = None,
           max_removal_ratio: float = 0.9, **sink) -> Path:
    """An incremental pipeline that sees only the experiment NAME and the models NAME_*."""
    source = {"incremental": True, "incremental_lookback_sec": 0,
              "experiment_pattern": {"allow": [f"{name}$"]}, "model_pattern": {"allow": [f"{name}_"]}}
    if registry_uri:
        source["registry_uri"] = registry_uri
    return write_recipe(tmp_path, url, rest_sink(gms.url, tmp_path / "dead.json", **sink), pipeline=name,
                        state={"path": str(tmp_path / "state.json"), "max_removal_ratio": max_removal_ratio},
                        **source)


def state(tmp_path: Path, pipeline: str) -> dict:
    return json.loads((tmp_path / "state.json").read_text(encoding="utf-8"))["pipelines"][pipeline]


def removed(gms: CatalogServer, urn: str) -> bool:
    return (gms.store.get((urn, "status")) or {}).get("removed") is True


def run_ok(path: Path, tmp_path: Path, *args: str) -> dict:
    proc, report, _ = ingest(path, tmp_path, *args)
    assert proc.returncode == 0 and report["status"] == "success", proc.stdout + proc.stderr
    return report


def run_failing(path: Path, tmp_path: Path, *args: str) -> dict:
    proc, report, _ = ingest(path, tmp_path, *args)
    assert proc.returncode == 1 and report["status"] == "failure", proc.stdout + proc.stderr
    return report


def test_a_removal_the_catalog_refused_stays_pending_until_delivered(server, gms, tmp_path):
    mlflow = client(server)
    exp = mlflow.create_experiment("lc_refused_removal")
    run_id = new_run(mlflow, exp, "r")
    for model in ("lc_refused_removal_keep", "lc_refused_removal_gone"):
        mlflow.create_registered_model(model)
        mlflow.create_model_version(model, f"runs:/{run_id}/m", run_id=run_id)
    path = recipe(tmp_path, server, gms, "lc_refused_removal")
    run_ok(path, tmp_path)

    gone = group_urn("lc_refused_removal_gone")
    mlflow.delete_registered_model("lc_refused_removal_gone")
    gms.reject = lambda r: "refused" if r["entityUrn"] == gone and r["aspectName"] == "status" else None
    first = run_failing(path, tmp_path)
    assert removed(gms, model_urn("lc_refused_removal_gone", 1)) and not removed(gms, gone)
    assert [key[0] for key, _ in dead_letters(tmp_path / "dead.json")] == [gone]
    assert first["checkpoint_after"] is not None and first["resend_next_run"] == 1
    assert state(tmp_path, "lc_refused_removal")["pending_removals"] == [gone]

    gms.reject = lambda r: None
    gms.received.clear()
    second = run_ok(path, tmp_path)
    assert removed(gms, gone)  # the catalog no longer shows the deleted model
    assert [(r["entityUrn"], r["aspectName"]) for r in gms.received] == [(gone, "status")]
    assert second["entities_removed"] == 1
    assert "pending_removals" not in state(tmp_path, "lc_refused_removal")
    assert not removed(gms, group_urn("lc_refused_removal_keep"))
    assert (tmp_path / "dead.json.superseded").exists()  # delivered now: the dead letter is out of date

    gms.received.clear()
    run_ok(path, tmp_path)
    assert gms.received == []  # sent once, not forever


def test_a_listing_that_finds_nothing_the_state_knows_removes_nothing(server, gms, tmp_path):
    from tests.fault_proxy import FaultProxy

    mlflow = client(server)
    exp = mlflow.create_experiment("lc_empty")
    run_id = new_run(mlflow, exp, "r")
    models = ["lc_empty_a", "lc_empty_b"]
    for model in models:
        mlflow.create_registered_model(model)
        mlflow.create_model_version(model, f"runs:/{run_id}/m", run_id=run_id)
    run_ok(recipe(tmp_path, server, gms, "lc_empty"), tmp_path)

    # a wrong registry_uri: a registry that answers with no models at all
    with FaultProxy(server) as wrong_registry:
        wrong_registry.add("registered-models/search", "rewrite", rewrite=lambda answer: {})
        report = run_failing(recipe(tmp_path, server, gms, "lc_empty", registry_uri=wrong_registry.url), tmp_path)
    refusal = [f["message"] for f in report["failures"] if f["title"] == "Stale-entity removal refused"]
    assert refusal and "no registered models while the state knows 2" in refusal[0]
    assert "--allow-mass-removal" in refusal[0]
    assert not any(removed(gms, urn) for urn in [group_urn(m) for m in models] + [model_urn(m, 1) for m in models])

    # one model deleted for real: removed as before
    path = recipe(tmp_path, server, gms, "lc_empty")
    mlflow.delete_registered_model("lc_empty_a")
    run_ok(path, tmp_path)
    assert removed(gms, group_urn("lc_empty_a")) and removed(gms, model_urn("lc_empty_a", 1))
    assert not removed(gms, group_urn("lc_empty_b"))

    # the last one: refused until a person confirms it
    mlflow.delete_registered_model("lc_empty_b")
    run_failing(path, tmp_path)
    assert not removed(gms, group_urn("lc_empty_b"))
    confirmed = run_ok(path, tmp_path, "--allow-mass-removal")
    assert removed(gms, group_urn("lc_empty_b")) and removed(gms, model_urn("lc_empty_b", 1))
    assert any(i["title"] == "Mass removal confirmed" for i in confirmed["infos"])
    assert not removed(gms, exp_urn("lc_empty"))


def test_empty_pages_that_carry_a_new_token_are_followed(server, gms, tmp_path):
    from tests.fault_proxy import FaultProxy

    mlflow = client(server)
    exp = mlflow.create_experiment("lc_pages")
    run_id = new_run(mlflow, exp, "r")
    mlflow.create_registered_model("lc_pages_model", description="paged")
    mlflow.create_model_version("lc_pages_model", f"runs:/{run_id}/m", run_id=run_id)
    with FaultProxy(server) as databricks_like:
        databricks_like.add("registered-models/search", "empty_pages", pages=3)
        run_ok(recipe(tmp_path, server, gms, "lc_pages", registry_uri=databricks_like.url), tmp_path)
        tokens = [p for _, p in databricks_like.requests if "registered-models/search" in p]
    assert len(tokens) == 4  # three empty pages, then the real one
    assert gms.store[(group_urn("lc_pages_model"), "mlModelGroupProperties")]["description"] == "paged"
    assert (model_urn("lc_pages_model", 1), "mlModelProperties") in gms.store


def test_entities_a_failed_run_delivered_are_sent_again_by_the_next_run(server, gms, tmp_path):
    """The run fails part way (GMS answers 503 for one model, sent after the runs); MLflow then
    reverts exactly the value that run had delivered (a tag of a run still going on, read again by
    every run): the next run must put the reverted value back in the catalog."""
    mlflow = client(server)
    exp = mlflow.create_experiment("lc_partial")
    going_on = mlflow.create_run(exp, run_name="training", tags={"phase": "v1"}).info.run_id  # RUNNING
    mlflow.create_registered_model("lc_partial_z", description="v1")
    path = recipe(tmp_path, server, gms, "lc_partial", max_batch_size=1)
    run_ok(path, tmp_path)
    properties = (run_urn(going_on), "dataProcessInstanceProperties")
    assert gms.store[properties]["customProperties"]["phase"] == "v1"

    mlflow.set_tag(going_on, "phase", "v2")
    mlflow.update_registered_model("lc_partial_z", description="v2")
    outage = group_urn("lc_partial_z")
    gms.unavailable_for = lambda r: r["entityUrn"] == outage
    failed = run_failing(path, tmp_path)
    assert failed["mode"] == "incremental"
    assert gms.store[properties]["customProperties"]["phase"] == "v2"  # delivered before the run failed
    assert state(tmp_path, "lc_partial")["checkpoint"] == failed["checkpoint_before"]  # not moved
    assert failed["resend_next_run"] == 2 and state(tmp_path, "lc_partial")["dirty_runs"] == [going_on]


    gms.unavailable_for = lambda r: False
    mlflow.set_tag(going_on, "phase", "v1")  # reverted in MLflow: the checkpoint's value again
    second = run_ok(path, tmp_path)
    assert second["mode"] == "incremental"
    assert gms.store[properties]["customProperties"]["phase"] == "v1"
    assert gms.store[(outage, "mlModelGroupProperties")]["description"] == "v2"
    assert "dirty_runs" not in state(tmp_path, "lc_partial")


def test_a_run_and_dataset_the_catalog_refuses_do_not_hold_the_checkpoint_back(server, gms, tmp_path):
    import mlflow as mlflow_module
    import pandas as pd

    mlflow = client(server)
    exp = mlflow.create_experiment("lc_refused_run")
    mlflow_module.set_tracking_uri(server)
    with mlflow_module.start_run(experiment_id=exp, run_name="refused") as active:
        mlflow_module.log_param("lr", "0.1")
        mlflow_module.log_input(mlflow_module.data.from_pandas(pd.DataFrame({"x": [1.0]}),
                                                               source="s3://b/lc.parquet", name="lc_ds"))
    refused_run = run_urn(active.info.run_id)
    gms.reject = lambda r: "refused" if r["entityUrn"] == refused_run or (
        r["entityUrn"].startswith("urn:li:dataset:") and r["aspectName"] == "datasetProperties") else None
    path = recipe(tmp_path, server, gms, "lc_refused_run")
    first = run_failing(path, tmp_path)
    refused = {key[0] for key, _ in dead_letters(tmp_path / "dead.json")}
    dataset = next(u for u in refused if u.startswith("urn:li:dataset:"))
    assert refused == {refused_run, dataset}
    assert first["checkpoint_after"] is not None
    note = next(i["message"] for i in first["infos"] if i["title"] == "Checkpoint saved")
    assert "dataProcessInstance=1" in note and "dataset=1" in note and "dead letters" in note
    assert state(tmp_path, "lc_refused_run")["dirty_runs"] == [active.info.run_id]

    later = new_run(mlflow, exp, "later")
    gms.reject = lambda r: None
    second = run_ok(path, tmp_path)
    assert second["mode"] == "incremental"
    assert second["checkpoint_before"] == first["checkpoint_after"]  # the checkpoint moved on
    assert gms.store[(refused_run, "dataProcessInstanceProperties")]["name"] == "refused"
    assert gms.store[(dataset, "datasetProperties")]["name"] == "lc_ds"
    assert (run_urn(later), "dataProcessInstanceProperties") in gms.store
    assert "dirty_runs" not in state(tmp_path, "lc_refused_run")

    gms.received.clear()
    run_ok(path, tmp_path)
    assert gms.received == []


def test_a_state_of_another_mapping_version_makes_a_full_crawl_that_resends(server, gms, tmp_path):
    from connector.mapping.version import MAPPING_VERSION

    mlflow = client(server)
    exp = mlflow.create_experiment("lc_mapping")
    new_run(mlflow, exp, "r")
    mlflow.create_registered_model("lc_mapping_model", description="mapped now")
    path = recipe(tmp_path, server, gms, "lc_mapping")
    run_ok(path, tmp_path)
    assert state(tmp_path, "lc_mapping")["mapping_version"] == MAPPING_VERSION

    # what a release with an older mapping left: its values in the catalog, its version in the state
    properties = (group_urn("lc_mapping_model"), "mlModelGroupProperties")
    gms.store[properties] = {"customProperties": {}, "description": "mapped the old way"}
    saved = json.loads((tmp_path / "state.json").read_text(encoding="utf-8"))
    saved["pipelines"]["lc_mapping"]["mapping_version"] = MAPPING_VERSION - 1
    (tmp_path / "state.json").write_text(json.dumps(saved), encoding="utf-8")

    report = run_ok(path, tmp_path)
    assert report["mode"] == "full"
    why = next(i["message"] for i in report["infos"] if i["title"] == "Full crawl")
    assert f"mapping version {MAPPING_VERSION - 1} in the state, {MAPPING_VERSION} now" in why
    assert gms.store[properties]["description"] == "mapped now"
    assert state(tmp_path, "lc_mapping")["mapping_version"] == MAPPING_VERSION
    assert run_ok(path, tmp_path)["mode"] == "incremental"


def test_a_refused_run_deleted_in_mlflow_before_the_next_run_is_removed_from_the_catalog(server, gms, tmp_path):
    mlflow = client(server)
    exp = mlflow.create_experiment("lc_refused_then_deleted")
    kept, doomed = new_run(mlflow, exp, "kept"), new_run(mlflow, exp, "doomed")
    path = recipe(tmp_path, server, gms, "lc_refused_then_deleted")
    run_ok(path, tmp_path)
    refused_run = run_urn(doomed)
    mlflow.set_tag(doomed, "note", "changed")  # the run is re-read, and its properties refused
    mlflow.set_terminated(doomed)
    gms.reject = lambda r: "refused" if (r["entityUrn"], r["aspectName"]) == (
        refused_run, "dataProcessInstanceProperties") else None
    first = run_failing(path, tmp_path, "--full")
    assert doomed in state(tmp_path, "lc_refused_then_deleted")["dirty_runs"]
    assert first["checkpoint_after"] is not None
    gms.reject = lambda r: None
    mlflow.delete_run(doomed)
    second = run_ok(path, tmp_path)
    assert removed(gms, refused_run) and not removed(gms, run_urn(kept))
    assert second["entities_removed"] >= 1 and "dirty_runs" not in state(tmp_path, "lc_refused_then_deleted")
