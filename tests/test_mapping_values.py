"""What a DataHub user sees, on a real `mlflow server` (tests/seeding_values.py): a version's
metrics are its run's final values (not the step-0 copies log_model links to the model), unless
the model holds a later value; evaluation metrics keep their dataset; keys DataHub's own source
writes; storage locations; local CSV datasets upstream on the file platform; MLflow 2.x
signatures from the run tag; filtered models counted; one model's failed version listing."""
import json

import pytest
import requests

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from tests.catalog_server import CatalogServer
from tests.catalog_validation import validate_file
from tests.expectations import dataset_urn, group_urn, model_urn, run_urn
from tests.fault_proxy import FaultProxy
from tests.mlflow_server import mlflow_server
from tests.seeding_values import EXTRA_CSV, HOLDOUT, TRAIN_CSV, seed_values
from tests.test_datahub_lite import datahub

pytestmark = pytest.mark.server
VERSION = model_urn("values-model", 1)
LEGACY = model_urn("legacy-model", 1)
TRAIN = dataset_urn("train_csv", "local", TRAIN_CSV)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow-values"), proxy_artifacts=True) as url:
        yield seed_values(url)


def ingest(url, tmp_path, sink=None, **config):
    out = tmp_path / "out.json"
    report = run_ingest(parse_recipe({
        "source": {"type": "mlflow", "config": {"tracking_uri": url, **config}},
        "sink": sink or {"type": "file", "config": {"filename": str(out)}}}))
    if sink is not None:
        return None, report
    assert report.ok, report.failures
    by_urn: dict = {}
    for r in validate_file(out):
        by_urn.setdefault(r["entityUrn"], {})[r["aspectName"]] = r["aspect"]["json"]
    return by_urn, report


def metrics_of(aspect):
    return {(m["name"], m.get("description")): m["value"] for m in aspect["trainingMetrics"]}


def test_version_metrics_are_the_runs_final_values_unless_the_model_logged_later(store, tmp_path):
    # the premise: MLflow links the run's step-0 values to the LoggedModel
    found = requests.post(f"{store.url}/api/2.0/mlflow/logged-models/search",
                          json={"experiment_ids": [store.experiment_id]}, timeout=30).json()["models"]
    linked = {(m["key"], m["step"]): m["value"] for lm in found if lm["info"]["model_id"] == store.model_ids["model"]
              for m in lm["data"]["metrics"]}
    assert linked[("loss", 0)] == 1.0001 and linked[("val_auc", 0)] == 0.607

    a, _ = ingest(store.url, tmp_path)
    version = a[VERSION]["mlModelProperties"]
    assert metrics_of(version) == {
        ("loss", None): "0.02",         # the run's final value (step 49), not log_model's 1.0001
        ("val_auc", None): "0.95",      # logged for the model itself at step 100, after the run's 0.894
        ("holdout_auc", f"on dataset holdout ({store.holdout_digest})"): "0.88",  # keeps its dataset, once
    }
    holdout = dataset_urn("holdout", "s3", HOLDOUT)
    assert a[VERSION]["mlModelEvaluationData"] == {"evaluationData": [{"dataset": holdout}]}
    run = {m["name"]: m["value"] for m in a[run_urn(store.runs["trained"])]["mlTrainingRunProperties"]["trainingMetrics"]}
    assert run == {"loss": "0.02", "val_auc": "0.894", "holdout_auc": "0.88"}
    assert {p["name"]: p["value"] for p in version["hyperParams"]} == {"lr": "0.1"}


def test_keys_datahub_users_search_by_and_storage_locations(store, tmp_path):
    a, _ = ingest(store.url, tmp_path, include_logged_models=True)
    experiment = next(v["containerProperties"] for v in a.values()
                      if v.get("containerProperties", {}).get("name") == "values-exp")
    custom = experiment["customProperties"]
    assert custom["artifacts_location"] == custom["mlflow#artifacts_location"] == store.experiment_artifacts
    assert custom["team"] == "ml" and custom["id"] == "values-exp"
    version = a[VERSION]["mlModelProperties"]["customProperties"]
    assert version["mlflow#artifact_uri"] == store.artifact_uris["model"]
    assert version["mlflow#source"] == f"models:/{store.model_ids['model']}"
    candidate = next(v["mlModelProperties"] for u, v in a.items() if store.model_ids["candidate"] in u)
    assert candidate["customProperties"]["mlflow#artifact_uri"] == store.artifact_uris["candidate"]
    legacy_run = a[run_urn(store.runs["legacy"])]["dataProcessInstanceProperties"]
    legacy = a[LEGACY]["mlModelProperties"]["customProperties"]
    assert legacy["mlflow#artifact_uri"].endswith(f"{store.runs['legacy']}/artifacts/model")
    assert legacy_run["customProperties"]["mlflow.log-model.history"]  # run tags as DataHub writes them


def test_local_csv_datasets_have_an_upstream_on_the_file_platform(store, tmp_path):
    a, _ = ingest(store.url, tmp_path)
    upstreams = {}
    for _urn, aspects in a.items():
        if "upstreamLineage" in aspects:
            upstreams[aspects["datasetProperties"]["name"]] = aspects["upstreamLineage"]["upstreams"][0]["dataset"]
    assert upstreams["train_csv"] == "urn:li:dataset:(urn:li:dataPlatform:file,/data/churn/train.csv,PROD)"
    assert upstreams["extra_csv"] == "urn:li:dataset:(urn:li:dataPlatform:file,/data/churn/extra.csv,PROD)"
    assert upstreams["holdout"] == "urn:li:dataset:(urn:li:dataPlatform:s3,ml-data/churn/holdout.parquet,PROD)"
    assert {"dataset": TRAIN} in a[VERSION]["mlModelTrainingData"]["trainingData"]
    assert EXTRA_CSV.startswith("file://")


def test_mlflow2_signature_from_the_log_model_history_tag(store, tmp_path):
    a, report = ingest(store.url, tmp_path, include_signatures=True)
    features = a[LEGACY]["mlModelProperties"]["mlFeatures"]
    assert features == ["urn:li:mlFeature:(legacy-model,tenure)", "urn:li:mlFeature:(legacy-model,plan)"]
    assert a[features[0]]["mlFeatureProperties"]["dataType"] == "CONTINUOUS"
    assert a[features[1]]["mlFeatureProperties"]["dataType"] == "TEXT"
    # the MLmodel could not be read (none was uploaded), the tag answered: no warning for it
    assert not [w for w in report.warnings if store.runs["legacy"] in w["message"]], report.warnings
    assert "Signatures not read" not in {i["title"] for i in report.infos}

    a, report = ingest(store.url, tmp_path)
    assert "mlFeatures" not in a[LEGACY]["mlModelProperties"]
    assert "Signatures not read" in {i["title"] for i in report.infos}


def test_models_and_experiments_a_pattern_leaves_out_are_counted(store, tmp_path):
    a, report = ingest(store.url, tmp_path, model_pattern={"deny": ["legacy-.*"]},
                       experiment_pattern={"deny": ["Default"]})
    assert report.filtered == {"registered_models": 1, "experiments": 1}
    assert report.as_dict()["filtered"] == {"experiments": 1, "registered_models": 1}
    assert LEGACY not in a and group_urn("legacy-model") not in a and VERSION in a


def test_a_failed_version_listing_fails_only_that_model(store, tmp_path):
    with FaultProxy(store.url) as proxy, CatalogServer() as catalog:
        proxy.add("model-versions/search", "mlflow_error", not_matching="filter=")  # as Unity Catalog does
        proxy.add("broken-model", "mlflow_error", error_code="INTERNAL_ERROR")
        _, report = ingest(proxy.url, tmp_path, sink={"type": "datahub-rest", "config": {
            "server": catalog.url, "dead_letter_file": str(tmp_path / "dead.json")}})
        stored = {urn for urn, _ in catalog.store}
    assert not report.ok
    assert [f["title"] for f in report.failures] == ["Model versions not listed"]
    assert "'broken-model'" in report.failures[0]["message"]
    assert {VERSION, LEGACY, group_urn("values-model")} <= stored
    assert group_urn("broken-model") not in stored and model_urn("broken-model", 1) not in stored
    assert report.delivered == report.proposals and report.dead_lettered == 0


def test_loaded_into_datahub_lite(store, tmp_path):
    out = tmp_path / "out.json"
    ingest(store.url, tmp_path)
    lite = {"type": "duckdb", "config": {"file": str(tmp_path / "lite.duckdb")}}
    (tmp_path / ".datahubenv").write_text(json.dumps({"gms": {"server": "http://127.0.0.1:9"}, "lite": lite}))
    recipe = tmp_path / "load.yml"
    recipe.write_text(json.dumps({"source": {"type": "file", "config": {"path": str(out)}},
                                  "sink": {"type": "datahub-lite", "config": lite}}))
    datahub(tmp_path, "ingest", "-c", str(recipe))
    version = json.loads(datahub(tmp_path, "lite", "get", "--urn", VERSION))["mlModelProperties"]
    assert metrics_of(version)[("loss", None)] == "0.02"
    assert version["customProperties"]["mlflow#artifact_uri"] == store.artifact_uris["model"]
    train = json.loads(datahub(tmp_path, "lite", "get", "--urn", TRAIN))
    assert train["upstreamLineage"]["upstreams"][0]["dataset"].startswith("urn:li:dataset:(urn:li:dataPlatform:file,")
