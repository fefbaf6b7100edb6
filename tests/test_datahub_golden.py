"""DataHub's own MLflow source's golden scenario (its integration test's store: experiment
`test-experiment`, run `test-run` with p=1 and m=0.85, registered model `test-model` tagged
model_id=1 / model_env=test, version 1 from `dummy_dir/dummy_file` tagged model_version_id=1,
Archived), rebuilt here with our MLflow on a real server and crawled with ours. Every key and
value DataHub's source emits that we also describe must agree; where ours differs, docs/mapping.md
("DataHub's own MLflow source") says why, and DIFFERENCES below names each case.

The expected values are facts read off DataHub's golden file and source (acryl-datahub 1.7):
stage tags, group and version properties, the experiment's custom properties, the run."""
import pytest

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from tests.catalog_validation import validate_file
from tests.expectations import exp_urn, group_urn, model_urn, run_urn
from tests.mlflow_server import mlflow_server

pytestmark = pytest.mark.server
GROUP, VERSION = group_urn("test-model"), model_urn("test-model", 1)
STAGE_TAGS = {  # name -> (description, colour) as DataHub's golden has them
    "mlflow_production": ("Production Stage for an ML model in MLflow Model Registry", "#308613"),
    "mlflow_staging": ("Staging Stage for an ML model in MLflow Model Registry", "#FACB66"),
    "mlflow_archived": ("Archived Stage for an ML model in MLflow Model Registry", "#5D7283"),
    "mlflow_none": ("None Stage for an ML model in MLflow Model Registry", "#F2F4F5"),
}
# Where ours differs from DataHub's golden, on purpose (docs/mapping.md, "DataHub's own MLflow source"):
DIFFERENCES = {
    "mlModelProperties.tags": "DataHub's golden lists tag keys (model_version_id); its current source and "
                              "ours write key:value (model_version_id:1)",
    "mlModelProperties.date / mlModelGroupProperties.createdAt": "ours writes `created` (DataHub's current "
                                                                 "source too); `date`/`createdAt` are deprecated",
    "customProperties mlflow#*": "ours adds MLflow's own values beside the tags, under keys no tag can have",
    "versionProperties.version.metadataAttribution.actor": "DataHub writes urn:li:corpuser:datahub; ours the "
                                                           "version's creator, else urn:li:corpuser:mlflow",
    "dataProcessInstanceProperties.created.actor": "DataHub writes a platformResource URN per MLflow user; ours "
                                                   "the corpuser, the entity DataHub's UI shows as a person",
}


@pytest.fixture(scope="module")
def golden_store(tmp_path_factory):
    """DataHub's integration test's setup with our MLflow, written straight into the store as its
    test does (a server refuses the local source `dummy_dir/dummy_file`), then served by a real
    `mlflow server` for the crawl."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("datahub-golden")
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment_id = client.create_experiment("test-experiment", artifact_location=str(root / "artifacts"))
    run = client.create_run(experiment_id=experiment_id, run_name="test-run")
    client.log_param(run_id=run.info.run_id, key="p", value=1)
    client.log_metric(run_id=run.info.run_id, key="m", value=0.85)
    client.create_registered_model(name="test-model", tags=dict(model_id=1, model_env="test"),
                                   description="This a test registered model")
    client.create_model_version(name="test-model", source="dummy_dir/dummy_file", run_id=run.info.run_id,
                                tags=dict(model_version_id=1))
    client.transition_model_version_stage(name="test-model", version="1", stage="Archived")
    run, experiment = client.get_run(run.info.run_id), client.get_experiment(experiment_id)
    with mlflow_server(root) as url:
        yield url, run, experiment


@pytest.fixture(scope="module")
def ours(golden_store, tmp_path_factory):
    url = golden_store[0]
    out = tmp_path_factory.mktemp("golden-out") / "out.json"
    report = run_ingest(parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": url}},
                                      "sink": {"type": "file", "config": {"filename": str(out)}}}))
    assert report.ok, report.failures
    by_urn: dict = {}
    for r in validate_file(out):
        by_urn.setdefault(r["entityUrn"], {})[r["aspectName"]] = r["aspect"]["json"]
    return by_urn


def users_keys(custom: dict) -> dict:
    return {k: v for k, v in custom.items() if not k.startswith("mlflow#")}


def test_stage_tags_agree(ours):
    for name, (description, colour) in STAGE_TAGS.items():
        aspects = ours[f"urn:li:tag:{name}"]
        assert aspects["tagProperties"] == {"name": name, "description": description, "colorHex": colour}
        assert aspects["status"] == {"removed": False}


def test_model_group_agrees(ours):
    props = ours[GROUP]["mlModelGroupProperties"]
    assert props["customProperties"] == {"model_env": "test", "model_id": "1"}
    assert props["description"] == "This a test registered model"
    assert props["version"]["versionTag"] == "1"  # the current source's latest version
    assert ours[GROUP]["status"] == {"removed": False}


def test_model_version_agrees(ours, golden_store):
    _, run, _ = golden_store
    aspects = ours[VERSION]
    props = aspects["mlModelProperties"]
    assert users_keys(props["customProperties"]) == {"model_version_id": "1"}
    assert props["version"] == {"versionTag": "1"}
    assert props["hyperParams"] == [{"name": "p", "value": "1"}]
    assert props["trainingMetrics"] == [{"name": "m", "value": "0.85"}]
    assert props["groups"] == [GROUP]
    assert props["trainingJobs"] == [run_urn(run.info.run_id)]
    assert props["tags"] == ["model_version_id:1"]  # see DIFFERENCES
    assert aspects["globalTags"] == {"tags": [{"tag": "urn:li:tag:mlflow_archived"}]}
    assert aspects["status"] == {"removed": False}
    version = aspects["versionProperties"]
    assert (version["version"]["versionTag"], version["sortId"], version["aliases"]) == ("1", "0000000001", [])
    assert version["versionSet"].startswith("urn:li:versionSet:(") and version["versionSet"].endswith(",mlModel)")


def test_experiment_and_run_agree(ours, golden_store):
    _, run, experiment = golden_store
    container = ours[exp_urn("test-experiment")]
    assert container["containerProperties"]["name"] == "test-experiment"
    assert users_keys(container["containerProperties"]["customProperties"]) == {
        "platform": "urn:li:dataPlatform:mlflow", "id": "test-experiment",
        "artifacts_location": experiment.artifact_location}
    assert container["subTypes"] == {"typeNames": ["ML Experiment"]}
    assert container["dataPlatformInstance"] == {"platform": "urn:li:dataPlatform:mlflow"}
    dpi = ours[run_urn(run.info.run_id)]
    props = dpi["dataProcessInstanceProperties"]
    assert props["name"] == "test-run"
    assert props["created"]["time"] == run.info.start_time
    assert users_keys(props["customProperties"]) == run.data.tags  # the run's tags, as DataHub writes them
    assert dpi["container"] == {"container": exp_urn("test-experiment")}
    training = dpi["mlTrainingRunProperties"]
    assert training["id"] == run.info.run_id and training["outputUrls"] == [run.info.artifact_uri]
    assert training["hyperParams"] == [{"name": "p", "value": "1"}]
    assert training["trainingMetrics"] == [{"name": "m", "value": "0.85"}]
    assert dpi["dataProcessInstanceOutput"]["outputEdges"] == [{"destinationUrn": VERSION}]
    assert dpi["subTypes"] == {"typeNames": ["ML Training Run"]}
    assert dpi["dataPlatformInstance"] == {"platform": "urn:li:dataPlatform:mlflow"}
    assert set(DIFFERENCES)  # each is explained in docs/mapping.md
