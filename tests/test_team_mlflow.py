"""On an MLflow seeded the way a team does it (tests/team_seeding.py): what issue 13 found wrong
or missing, each shown on the connector's output, read back with the catalog's own library."""
import os
import stat

import pytest

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from tests.catalog_validation import validate_file
from tests.expectations import dataset_urn, exp_urn, model_urn, run_urn
from tests.team_seeding import REDSHIFT_TABLE

pytestmark = pytest.mark.server
CHURN_TRAIN = dataset_urn("train", "s3", "s3://acme-ml/churn/train.parquet")
FRAUD_TRAIN = dataset_urn("train", "s3", "s3://acme-ml/fraud/2024/train.parquet")
CHURN_TEST = dataset_urn("test", "s3", "s3://acme-ml/churn/test.parquet")
CHURN_UNNAMED = dataset_urn("dataset", "s3", "s3://acme-ml/churn/extra.parquet")
FRAUD_UNNAMED = dataset_urn("dataset", "s3", "s3://acme-ml/fraud/extra.parquet")


def ingest(team, path, **config):
    recipe = parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": team.url, **config}},
                           "sink": {"type": "file", "config": {"filename": str(path)}}})
    report = run_ingest(recipe)
    assert report.ok, report.failures
    aspects = {}
    for r in validate_file(path):
        aspects.setdefault(r["entityUrn"], {}).setdefault(r["aspectName"], []).append(r["aspect"]["json"])
    return {u: {k: v[0] if len(v) == 1 else v for k, v in a.items()} for u, a in aspects.items()}, report


@pytest.fixture(scope="module")
def team_catalog(team_server, tmp_path_factory):
    path = tmp_path_factory.mktemp("team") / "catalog.json"
    old_umask = os.umask(0o022)
    try:
        aspects, report = ingest(team_server, path, include_logged_models=True, include_signatures=True)
    finally:
        os.umask(old_umask)
    return team_server, aspects, report, path


def test_datasets_of_one_name_from_different_sources_stay_apart(team_catalog):
    team, a, report, _ = team_catalog
    churn_v1, fraud_v1 = a[model_urn("churn_classifier", 1)], a[model_urn("fraud_detector", 1)]
    assert churn_v1["mlModelTrainingData"]["trainingData"] == [{"dataset": CHURN_TRAIN}, {"dataset": CHURN_UNNAMED}]
    assert fraud_v1["mlModelTrainingData"]["trainingData"] == [{"dataset": FRAUD_TRAIN}, {"dataset": FRAUD_UNNAMED}]
    assert a[CHURN_TRAIN]["upstreamLineage"]["upstreams"][0]["dataset"] == \
        "urn:li:dataset:(urn:li:dataPlatform:s3,acme-ml/churn/train.parquet,PROD)"
    assert a[FRAUD_TRAIN]["upstreamLineage"]["upstreams"][0]["dataset"] == \
        "urn:li:dataset:(urn:li:dataPlatform:s3,acme-ml/fraud/2024/train.parquet,PROD)"
    assert [f["fieldPath"] for f in a[CHURN_TRAIN]["schemaMetadata"]["fields"]] == ["tenure", "monthly_spend", "churned"]
    assert [f["fieldPath"] for f in a[FRAUD_TRAIN]["schemaMetadata"]["fields"]] == ["amount", "hour", "is_fraud"]
    assert a[CHURN_TRAIN]["datasetProperties"]["name"] == "train"
    # both trials retrained on the same source: one dataset
    for trial in ("trial_a", "trial_b"):
        assert CHURN_TRAIN in a[run_urn(team.runs[trial])]["dataProcessInstanceInput"]["inputs"]
    assert [w for w in report.warnings if "merged" in w["title"]] == []


def test_keyed_by_name_they_merge_with_a_warning(team_server, tmp_path):
    a, report = ingest(team_server, tmp_path / "by-name.json", dataset_urn="name")
    by_name = "urn:li:dataset:(urn:li:dataPlatform:mlflow,train,PROD)"
    assert a[model_urn("churn_classifier", 1)]["mlModelTrainingData"]["trainingData"][0] == {"dataset": by_name}
    merged = [w["message"] for w in report.warnings if w["title"] == "Datasets merged under one name"]
    assert any(m.startswith(by_name) and "s3://acme-ml/churn/train.parquet" in m
               and "s3://acme-ml/fraud/2024/train.parquet" in m for m in merged), merged
    assert len(merged) == 3  # train, test and the unnamed `dataset`


def test_each_metric_once_described_with_its_dataset(team_catalog):
    _, a, _, _ = team_catalog
    metrics = a[model_urn("churn_classifier", 1)]["mlModelProperties"]["trainingMetrics"]
    assert sorted(m["name"] for m in metrics) == ["accuracy", "train_loss"]
    accuracy = next(m for m in metrics if m["name"] == "accuracy")
    digest = a[CHURN_TEST]["datasetProperties"]["customProperties"]["digest"]
    assert accuracy["description"] == f"on dataset test ({digest})"
    assert a[model_urn("churn_classifier", 1)]["mlModelEvaluationData"] == {"evaluationData": [{"dataset": CHURN_TEST}]}


def test_nested_runs_name_their_parent(team_catalog):
    team, a, _, _ = team_catalog
    for trial in ("trial_a", "trial_b"):
        assert a[run_urn(team.runs[trial])]["dataProcessInstanceRelationships"] == {
            "upstreamInstances": [], "parentInstance": run_urn(team.runs["parent"])}
    assert "dataProcessInstanceRelationships" not in a[run_urn(team.runs["parent"])]


def test_features_of_unregistered_logged_models_and_partial_signatures(team_catalog):
    team, a, _, _ = team_catalog
    name = f"model_{team.model_ids['trial_a']}"
    unregistered = a[f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,{name},PROD)"]["mlModelProperties"]
    assert unregistered["mlFeatures"] == [f"urn:li:mlFeature:({name},tenure)", f"urn:li:mlFeature:({name},monthly_spend)"]
    assert not [u for u in a if u.startswith("urn:li:mlFeature:(model,")]
    # the nightly model's signature has an unnamed and a malformed column: the named ones stay
    assert a[model_urn("fraud_detector", 2)]["mlModelProperties"]["mlFeatures"] == [
        "urn:li:mlFeature:(fraud_detector,amount)", "urn:li:mlFeature:(fraud_detector,hour)"]


def test_unknown_is_no_owner_and_tags_stay_as_the_user_set_them(team_catalog):
    team, a, _, _ = team_catalog
    assert "ownership" not in a[model_urn("fraud_detector", 2)]     # its run's user is MLflow's `unknown`
    assert a[model_urn("fraud_detector", 1)]["ownership"]["owners"][0]["type"] == "TECHNICAL_OWNER"
    parent = a[run_urn(team.runs["parent"])]["dataProcessInstanceProperties"]["customProperties"]
    assert (parent["status"], parent["experiment_id"], parent["reviewed"]) == ("candidate", "sprint-12", "")
    assert (parent["mlflow#status"], parent["mlflow#experiment_id"]) == ("FINISHED", team.experiments["churn"])
    churn = a[exp_urn("churn")]["containerProperties"]["customProperties"]
    assert (churn["experiment_id"], churn["owner_note"], churn["mlflow#experiment_id"]) == (
        "legacy-7", "", team.experiments["churn"])
    assert churn["platform"] == "ml-platform-v2"  # a user tag goes over the container key's field, as in DataHub
    assert a[exp_urn("fraud")]["containerProperties"]["customProperties"]["platform"] == "urn:li:dataPlatform:mlflow"
    assert a[exp_urn("fraud")]["containerProperties"]["customProperties"]["id"] == "fraud"


def test_parity_aspects_and_platform_named_sources(team_catalog):
    team, a, _, _ = team_catalog
    for stage in ("production", "staging", "archived", "none"):
        assert a[f"urn:li:tag:mlflow_{stage}"]["status"] == {"removed": False}
    version = a[model_urn("churn_classifier", 1)]["versionProperties"]["version"]
    assert version["versionTag"] == "1"
    assert version["metadataAttribution"]["actor"] == "urn:li:corpuser:root"
    assert version["metadataAttribution"]["time"] > 0
    assert a[model_urn("fraud_detector", 2)]["versionProperties"]["version"]["metadataAttribution"]["actor"] == \
        "urn:li:corpuser:mlflow"  # nobody known
    transactions = [u for u in a if u.startswith("urn:li:dataset:(urn:li:dataPlatform:mlflow,transactions@")]
    assert len(transactions) == 1
    assert a[transactions[0]]["upstreamLineage"]["upstreams"][0]["dataset"] == \
        f"urn:li:dataset:(urn:li:dataPlatform:redshift,{REDSHIFT_TABLE},PROD)"


def test_the_output_file_honours_the_umask(team_catalog):
    *_, path = team_catalog
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # written under umask 022
