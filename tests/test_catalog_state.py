"""State kept in the catalog (state.backend: datahub): DataHub's checkpoint aspect on the stand-in GMS,
read back by DataHub's own client, and two "workers" in different directories continuing each
other's checkpoint through it."""
import json
import subprocess
import sys

import pytest

from connector.config.recipe import RecipeError, parse_recipe
from connector.config.settings import open_state_store
from tests.seeding import new_run
from connector.state.lock import lock_name
from connector.sinks.gms_client import GmsClient, GmsSettings
from connector.state.catalog_store import ASPECT, GmsStateStore
from connector.state.store import PipelineState, StateError, StateFile
from tests.catalog_server import CatalogServer
from tests.cli_in_process import run_cli
from tests.expectations import group_urn, model_urn, run_urn
from tests.mlflow_server import mlflow_server

CLI = [sys.executable, "-m", "connector.cli"]
CHECKPOINT_URN = "urn:li:dataJob:(urn:li:dataFlow:(datahub,fleet-a,prod),mlflow_catalog_state)"


def a_state(n: int) -> PipelineState:
    return PipelineState(
        checkpoint={"runs_started_until": 1000 * n, "run_id": f"fleet-a-run-{n}", "mode": "full"},
        open_runs=["r-open"], config_hash="cafe",
        fingerprints={run_urn(f"run-{i}"): f"h{i}-{n}" for i in range(50)},
        optional_aspects={model_urn("m", 1): {"deprecation"}}, experiments={"1": "urn:li:container:abc"})


def rest_recipe(catalog_url: str, **state) -> dict:
    return {"pipeline_name": "fleet-a",
            "source": {"type": "mlflow", "config": {"tracking_uri": "http://127.0.0.1:9", "incremental": True,
                                                     "max_retries": 0}},
            "sink": {"type": "datahub-rest", "config": {"server": catalog_url}},
            "state": {"backend": "datahub", **state}}


def test_checkpoint_is_datahubs_aspect_and_datahubs_own_client_reads_it_back():
    from datahub.ingestion.graph.client import DataHubGraph, DatahubClientConfig
    from datahub.ingestion.source.state.checkpoint import Checkpoint, CheckpointStateBase
    from datahub.metadata.schema_classes import DatahubIngestionCheckpointClass

    with CatalogServer(token="s3cret") as gms:
        store = GmsStateStore(GmsClient(GmsSettings(server=gms.url, token="s3cret")))
        assert store.load("fleet-a") == PipelineState()  # nothing stored yet: a first run
        store.save("fleet-a", a_state(1))
        store.save("fleet-a", a_state(2))
        assert store.load("fleet-a") == a_state(2)  # the latest value wins
        assert gms.problems == []  # both aspects validated by acryl-datahub's schema classes
        assert {r["aspectName"] for r in gms.received if r["entityUrn"] == CHECKPOINT_URN} == {
            "status", ASPECT, "dataJobInfo"}  # dataJobInfo: which value is the newest, read back at once
        assert gms.store[(CHECKPOINT_URN, "status")]["removed"] is True  # kept out of search, as DataHub does

        graph = DataHubGraph(DatahubClientConfig(server=gms.url, token="s3cret"))
        aspect = graph.get_latest_timeseries_value(CHECKPOINT_URN, DatahubIngestionCheckpointClass,
                                                   {"pipelineName": "fleet-a"})
    assert aspect.pipelineName == "fleet-a" and aspect.runId == "fleet-a-run-2"
    assert (aspect.state.formatVersion, aspect.state.serde) == ("1.0", "base85-bz2-json")

    class Raw(CheckpointStateBase, extra="allow"):
        pass

    checkpoint = Checkpoint.create_from_checkpoint_aspect("mlflow_catalog_state", aspect, Raw)
    assert checkpoint.state.model_extra == json.loads(json.dumps(a_state(2).to_json()))


def test_other_pipelines_and_reads_of_an_unknown_pipeline_stay_apart():
    with CatalogServer() as gms:
        store = GmsStateStore(GmsClient(GmsSettings(server=gms.url)))
        store.save("fleet-a", a_state(1))
        assert store.load("fleet-b") == PipelineState()
        assert store.load("fleet-a") == a_state(1)


def test_a_gms_without_lifecycle_last_updated_gets_the_plain_status():
    def older_gms(record):
        if record["aspectName"] == "status" and "lifecycleLastUpdated" in record["aspect"]:
            return "Unrecognized field 'lifecycleLastUpdated' in com.linkedin.common.Status"
        return None

    with CatalogServer() as gms:
        gms.reject = older_gms
        store = GmsStateStore(GmsClient(GmsSettings(server=gms.url)))
        store.save("fleet-a", a_state(1))
        assert gms.store[(CHECKPOINT_URN, "status")] == {"removed": True}
        assert store.load("fleet-a") == a_state(1)


def test_backend_choice_and_its_validation(tmp_path):
    file_recipe = parse_recipe({**rest_recipe("http://gms:8080"), "state": {"path": str(tmp_path / "s.json")}})
    assert isinstance(open_state_store(file_recipe.state, file_recipe.sink), StateFile)  # file stays the default
    store = open_state_store(*(lambda r: (r.state, r.sink))(parse_recipe(rest_recipe("http://gms:8080"))))
    assert isinstance(store, GmsStateStore) and store.server == "http://gms:8080"
    own = parse_recipe({**rest_recipe("http://gms:8080"), "sink": {"type": "file", "config": {"filename": "o.json"}},
                        "state": {"backend": "datahub", "server": "http://state-gms:8080", "token": "t0k"}})
    assert open_state_store(own.state, own.sink).server == "http://state-gms:8080"
    assert "t0k" not in repr(open_state_store(own.state, own.sink))

    with pytest.raises(RecipeError, match=r"state.backend: 'datahub' .*needs the datahub-rest sink or state.server"):
        parse_recipe({**rest_recipe("http://gms:8080"), "sink": {"type": "file", "config": {"filename": "o.json"}}})
    with pytest.raises(RecipeError, match=r"state.backend: Input should be 'file' or 'datahub'"):
        parse_recipe(rest_recipe("http://gms:8080", backend="redis"))
    with pytest.raises(RecipeError, match=r"state.server: 'gms:8080' has no scheme: write http://gms:8080"):
        parse_recipe(rest_recipe("http://gms:8080", server="gms:8080"))
    with pytest.raises(RecipeError, match=r"state.server: expected an http\(s\):// URL"):
        parse_recipe(rest_recipe("http://gms:8080", server="ftp://gms"))
    with pytest.raises(RecipeError, match=r"state.server: invalid URL 'http://gms:80x0'"):
        parse_recipe(rest_recipe("http://gms:8080", server="http://gms:80x0"))


def test_unreachable_or_refusing_gms_is_a_clear_failure_without_the_token(tmp_path):
    from connector.pipeline import run_ingest

    with CatalogServer(token="right") as gms:
        wrong = GmsStateStore(GmsClient(GmsSettings(server=gms.url, token="wrong-s3cret")))
        with pytest.raises(StateError, match=r"token rejected by http://127.0.0.1:\d+ \(HTTP 401\)") as exc:
            wrong.load("fleet-a")
        assert "wrong-s3cret" not in str(exc.value)
        gone = gms.url
    recipe = parse_recipe(rest_recipe(gone, path=str(tmp_path / "lockdir" / "state.json")))
    recipe.sink.config.max_retries = recipe.sink.config.retry_backoff_sec = 0
    report = run_ingest(recipe)
    assert not report.ok
    assert report.failures[0]["title"] == "State store failed"
    assert f"reading the checkpoint of {CHECKPOINT_URN}: {gone} did not answer" in report.failures[0]["message"]


def test_check_reads_the_checkpoint_from_the_catalog(tmp_path):
    with CatalogServer(token="s3cret") as gms:
        recipe = rest_recipe(gms.url, path=str(tmp_path / "state.json"))
        recipe["sink"]["config"]["token"] = "s3cret"
        path = tmp_path / "recipe.yml"
        path.write_text(json.dumps(recipe), encoding="utf-8")
        before = run_cli("check", "-c", path)
        GmsStateStore(GmsClient(GmsSettings(server=gms.url, token="s3cret"))).save("fleet-a", a_state(3))
        after = run_cli("check", "-c", path)
    assert "[ok] state (datahub): no checkpoint of 'fleet-a' yet: the first run is a full crawl" in before.stdout
    assert "[ok] state (datahub): checkpoint of 'fleet-a' from run fleet-a-run-3, 50 entities known" in after.stdout
    assert after.returncode == 1 and "[FAIL] tracking server: MLflow at http://127.0.0.1:9" in after.stdout
    assert "s3cret" not in before.stdout + before.stderr + after.stdout + after.stderr


@pytest.mark.server
def test_two_workers_continue_each_others_checkpoint_through_the_catalog(tmp_path_factory):
    """Two working directories (two machines' worth: no shared file), one catalog: the second run
    starts from the first one's checkpoint and sends only what changed."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("two-workers")
    with mlflow_server(root / "mlflow") as mlflow_url, CatalogServer() as gms:
        client = MlflowClient(mlflow_url)
        exp = client.create_experiment("fleet-exp")
        first_runs = [new_run(client, exp, f"r{i}") for i in range(3)]
        client.create_registered_model("fleet_model")
        client.create_model_version("fleet_model", f"runs:/{first_runs[0]}/m", run_id=first_runs[0])

        recipe = {"pipeline_name": "fleet-a",
                  "source": {"type": "mlflow", "config": {"tracking_uri": mlflow_url, "incremental": True}},
                  "sink": {"type": "datahub-rest", "config": {"server": gms.url}},
                  "state": {"backend": "datahub"}}
        worker_a, worker_b = root / "worker-a", root / "worker-b"
        first = _ingest_in(worker_a, recipe)
        delivered_by_a = len(gms.received)
        assert first["mode"] == "full" and first["status"] == "success"
        assert run_urn(first_runs[2]) in {r["entityUrn"] for r in gms.received}

        added = new_run(client, exp, "r-new")
        client.create_model_version("fleet_model", f"runs:/{added}/m", run_id=added)
        second = _ingest_in(worker_b, recipe)
        sent_by_b = gms.received[delivered_by_a:]

    assert second["mode"] == "incremental"
    assert second["checkpoint_before"] == first["checkpoint_after"]
    data = {r["entityUrn"] for r in sent_by_b if r["entityType"] != "dataJob"}
    assert data == {run_urn(added), model_urn("fleet_model", 2), model_urn("fleet_model", 1),
                    group_urn("fleet_model")}  # version 1 loses isLatest; the group's latest version moves
    assert second["proposals"] == len([r for r in sent_by_b if r["entityType"] != "dataJob"]) < first["proposals"]
    assert gms.problems == []
    for worker in (worker_a, worker_b):  # nothing of the state on either machine, only the local lock
        assert [p.name for p in (worker / ".mlflow-catalog").iterdir()] == [f"state.json.{lock_name('fleet-a')}.lock"]


def _ingest_in(workdir, recipe: dict) -> dict:
    workdir.mkdir()
    (workdir / "recipe.yml").write_text(json.dumps(recipe), encoding="utf-8")
    proc = subprocess.run(CLI + ["ingest", "-c", "recipe.yml", "--report-file", "report.json"], cwd=workdir,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((workdir / "report.json").read_text())
