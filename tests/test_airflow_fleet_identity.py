"""Two MLflow servers that both hold a model named `model-002`, one recipe each with its own
`platform_instance`, through the DAG factory on real Airflow 3 into one (stand-in) GMS: deleting the
model on one server and the nightly crawl removes only that server's model. In the same DAG, two
recipes that would collide are refused (the fleet guard), and a recipe without state is refused on
the incremental schedule and crawled in full at night."""
import pytest

from connector.mapping import urns
from tests.catalog_server import CatalogServer
from tests.mlflow_server import free_port, mlflow_server
from tests.test_airflow import DAG_FILE, airflow, write

pytestmark = [pytest.mark.airflow, pytest.mark.server]
FIRST, NIGHTLY = "2026-01-01T02:45:00+00:00", "2026-01-01T03:00:00+00:00"


def seed(url: str, param: str) -> None:
    from mlflow import MlflowClient  # here: the offline tier collects this module without MLflow

    client = MlflowClient(url)
    experiment = client.create_experiment("training")
    run = client.create_run(experiment, run_name="train")
    client.log_param(run.info.run_id, "site", param)
    client.set_terminated(run.info.run_id)
    for name in ("model-002", "keep-1", "keep-2", "keep-3"):  # deleting one model is no broken crawl
        client.create_registered_model(name)
        client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)


def site(name: str, mlflow: str, gms: str, work) -> dict:
    return {"pipeline_name": name,
            "source": {"type": "mlflow", "config": {"tracking_uri": mlflow, "platform_instance": name,
                                                    "incremental": True}},
            "sink": {"type": "datahub-rest", "config": {"server": gms}},
            "state": {"path": str(work / "state" / f"{name}.json")}}


def file_recipe(name: str, mlflow: str, work, instance=None) -> dict:
    config = {"tracking_uri": mlflow, **({"platform_instance": instance} if instance else {})}
    return {"pipeline_name": name, "source": {"type": "mlflow", "config": config},
            "sink": {"type": "file", "config": {"filename": str(work / f"{name}.json")}}}


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("airflow-two-servers")
    work, recipes = root / "work", root / "recipes"
    with mlflow_server(root / "east-store", free_port()) as east, \
            mlflow_server(root / "west-store", free_port()) as west, CatalogServer() as gms:
        seed(east, "east")
        seed(west, "west")
        write(recipes / "east.yml", site("east", east, gms.url, work))
        write(recipes / "west.yml", site("west", west, gms.url, work))
        write(recipes / "nightly-east.yml", file_recipe("nightly-east", east, work, "east-nightly"))
        write(recipes / "dup-east.yml", file_recipe("dup-east", east, work, "dup"))  # collides with dup-west
        write(recipes / "dup-west.yml", file_recipe("dup-west", west, work, "dup"))
        dag_file = write(root / "dags" / "mlflow_catalog.py", DAG_FILE.format(
            recipes=str(recipes), options=", dag_id='sites', retries=0, progress_interval_sec=0"))
        first, first_log = airflow("run", dag_file, "sites", FIRST, home=root)
        MlflowClient(east).delete_registered_model("model-002")
        nightly, nightly_log = airflow("run", dag_file, "sites", NIGHTLY, home=root)
    return {"runs": first + nightly, "log": first_log + nightly_log, "gms": gms, "work": work}


def group(instance: str) -> str:
    return urns.model_group_urn("model-002", "PROD", instance=instance)


def version(instance: str) -> str:
    return urns.model_urn("model-002", "1", "_", "PROD", instance=instance)


def test_the_nightly_crawl_removes_only_the_deleting_servers_model(fleet):
    tasks = [run["tasks"] for run in fleet["runs"]]
    assert [t["ingest_east"]["state"] for t in tasks] == [t["ingest_west"]["state"] for t in tasks] == ["success"] * 2
    east, west = tasks[1]["ingest_east"]["xcom"], tasks[1]["ingest_west"]["xcom"]
    assert (east["mode"], west["mode"]) == ("full", "full")  # 03:00: the nightly full crawl
    assert east["entities_removed"] == 2 and west["entities_removed"] == 0  # the group and its version
    store = fleet["gms"].store
    assert store[(group("east"), "status")] == store[(version("east"), "status")] == {"removed": True}
    assert store[(group("west"), "status")] == store[(version("west"), "status")] == {"removed": False}
    assert store[(group("west"), "mlModelGroupProperties")]["name"] == "model-002"
    received = {r["entityUrn"] for r in fleet["gms"].received}
    assert group(None) not in received and version(None) not in received  # no URN both servers would share
    assert fleet["gms"].problems == []


def test_recipes_whose_urns_would_collide_are_refused_naming_both(fleet):
    for run in fleet["runs"]:
        assert run["tasks"]["ingest_dup-east"]["state"] == run["tasks"]["ingest_dup-west"]["state"] == "failed"
    assert "recipes dup-east.yml and dup-west.yml crawl different MLflow servers" in fleet["log"]
    assert "set a distinct source.config.platform_instance in each" in fleet["log"]
    assert not (fleet["work"] / "dup-east.json").exists() and not (fleet["work"] / "dup-west.json").exists()


def test_a_recipe_without_state_is_refused_on_the_incremental_schedule_and_crawled_at_night(fleet):
    states = [run["tasks"]["ingest_nightly-east"]["state"] for run in fleet["runs"]]
    assert states == ["failed", "success"]
    assert "runs on the incremental schedule (*/15 * * * *) but has no state section" in fleet["log"]
    assert fleet["runs"][1]["tasks"]["ingest_nightly-east"]["xcom"]["mode"] == "full"
    assert "mlflow-catalog nightly-east: full crawl of" in fleet["log"]
    assert "mlflow-catalog nightly-east: incremental" not in fleet["log"]
    assert "mlflow-catalog east: incremental run (a full crawl when no checkpoint is usable) of" in fleet["log"]
