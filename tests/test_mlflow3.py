"""MLflow 3 in depth against a real server (artifacts proxied through it, mlflow-artifacts:/):
LoggedModels, evaluation and training data, signatures as features, model cards from tags,
deprecation, isLatest."""
import warnings

import pytest

from connector.pipeline import run_ingest
from connector.recipe import parse_recipe
from tests.catalog_validation import validate_file
from tests.expectations import dataset_urn, group_urn, model_urn, run_urn
from tests.mlflow_server import mlflow_server

pytestmark = pytest.mark.server
TRAIN = dataset_urn("credit-train", "s3", "s3://credit/train.parquet")
HOLDOUT = dataset_urn("credit-holdout", "s3", "s3://credit/holdout.parquet")


@pytest.fixture(scope="module")
def mlflow3(tmp_path_factory):
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    warnings.filterwarnings("ignore")

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input["income"] * 2

    with mlflow_server(tmp_path_factory.mktemp("mlflow3"), proxy_artifacts=True) as url:
        mlflow.set_tracking_uri(url)
        client = MlflowClient(url)
        exp = client.create_experiment("credit")
        frame = pd.DataFrame({"income": [1.0, 2.0], "age": [30, 40], "region": ["n", "s"]})
        train = mlflow.data.from_pandas(frame, source="s3://credit/train.parquet", name="credit-train")
        holdout = mlflow.data.from_pandas(frame, source="s3://credit/holdout.parquet", name="credit-holdout")
        facts = {}
        for i in range(3):
            with mlflow.start_run(experiment_id=exp, run_name=f"credit-{i}") as run:
                mlflow.log_input(train, context="training")
                mlflow.log_param("lr", f"0.{i + 1}")
                info = mlflow.pyfunc.log_model(name="scorer", python_model=Doubler(),
                                               signature=infer_signature(frame, frame["income"]),
                                               input_example=frame)
                mlflow.log_metric("auc", 0.8 + i / 100, model_id=info.model_id, dataset=holdout)
                mlflow.log_metric("train_loss", 0.3, model_id=info.model_id)
                facts[i] = (run.info.run_id, info.model_id)
        for i in range(2):  # the third LoggedModel stays unregistered
            mlflow.register_model(f"models:/{facts[i][1]}", "credit_scorer")
        client.set_registered_model_alias("credit_scorer", "champion", "2")
        client.transition_model_version_stage("credit_scorer", "1", "Archived")
        client.set_registered_model_tag("credit_scorer", "card.intended_use.primary_uses", "credit scoring; limit setting")
        client.set_registered_model_tag("credit_scorer", "card.intended_use.primary_users", "ENTERPRISE")
        client.set_registered_model_tag("credit_scorer", "card.ethics.risks_and_harms", "unfair denials")
        client.set_model_version_tag("credit_scorer", "2", "card.caveats.description", "not tested on new markets")
        client.set_model_version_tag("credit_scorer", "2", "card.caveats.needs_further_testing", "true")
        client.set_model_version_tag("credit_scorer", "2", "card.factors.groups", '["age band", "region"]')
        client.set_model_version_tag("credit_scorer", "2", "owner_team", "risk")
        client.create_registered_model("old_scorer", tags={"deprecated": "replaced by credit_scorer"})
        yield url, facts


def ingest(url, tmp_path, **config):
    out = tmp_path / "out.json"
    report = run_ingest(parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": url, **config}},
                                      "sink": {"type": "file", "config": {"filename": str(out)}}}))
    assert report.ok, report.failures
    records = validate_file(out)
    by_urn = {}
    for r in records:
        by_urn.setdefault(r["entityUrn"], {})[r["aspectName"]] = r["aspect"]["json"]
    return by_urn, report


def test_version_carries_logged_model_data_features_and_datasets(mlflow3, tmp_path):
    url, facts = mlflow3
    a, report = ingest(url, tmp_path, include_signatures=True)
    v2 = a[model_urn("credit_scorer", 2)]
    props = v2["mlModelProperties"]
    assert {p["name"]: p["value"] for p in props["hyperParams"]} == {"lr": "0.2"}
    metrics = {(m["name"], m.get("description")) : m["value"] for m in props["trainingMetrics"]}
    assert metrics[("auc", f"on dataset credit-holdout ({_digest(a, HOLDOUT)})")] == "0.81"
    assert metrics[("train_loss", None)] == "0.3"
    assert props["customProperties"]["mlflow#model_id"] == facts[1][1]
    assert props["trainingJobs"] == [run_urn(facts[1][0])]
    assert v2["mlModelEvaluationData"] == {"evaluationData": [{"dataset": HOLDOUT}]}
    assert v2["mlModelTrainingData"] == {"trainingData": [{"dataset": TRAIN}]}
    features = ["urn:li:mlFeature:(credit_scorer,income)", "urn:li:mlFeature:(credit_scorer,age)",
                "urn:li:mlFeature:(credit_scorer,region)"]
    assert props["mlFeatures"] == features
    income = a[features[0]]["mlFeatureProperties"]
    assert income["dataType"] == "CONTINUOUS" and income["sources"] == [TRAIN]
    assert a[features[2]]["mlFeatureProperties"]["dataType"] == "TEXT"
    assert v2["versionProperties"]["isLatest"] is True
    assert a[model_urn("credit_scorer", 1)]["versionProperties"]["isLatest"] is False
    assert report.crawled["logged_models"] == 3


def _digest(a, dataset_urn):
    return a[dataset_urn]["datasetProperties"]["customProperties"]["digest"]


def test_model_cards_deprecation_and_signatures_off_by_default(mlflow3, tmp_path):
    a, _ = ingest(mlflow3[0], tmp_path)
    v2, v1 = a[model_urn("credit_scorer", 2)], a[model_urn("credit_scorer", 1)]
    assert v2["intendedUse"] == {"primaryUses": ["credit scoring", "limit setting"], "primaryUsers": ["ENTERPRISE"]}
    assert v2["mlModelEthicalConsiderations"] == {"risksAndHarms": ["unfair denials"]}
    assert v2["mlModelCaveatsAndRecommendations"] == {
        "caveats": {"caveatDescription": "not tested on new markets", "needsFurtherTesting": True}}
    assert v2["mlModelFactorPrompts"] == {"relevantFactors": [{"groups": ["age band", "region"]}]}
    assert v2["mlModelProperties"]["customProperties"]["owner_team"] == "risk"  # anything else stays
    assert not any(k.startswith("card.") for k in v2["mlModelProperties"]["customProperties"])
    assert v1["intendedUse"]["primaryUses"] == ["credit scoring", "limit setting"]  # from the model
    assert "mlModelCaveatsAndRecommendations" not in v1
    assert v1["deprecation"]["deprecated"] is True
    assert v1["deprecation"]["replacement"] == model_urn("credit_scorer", 2)  # the champion
    assert "deprecation" not in v2
    assert a[group_urn("old_scorer")]["deprecation"]["note"] == "replaced by credit_scorer"
    assert "mlFeatures" not in v2["mlModelProperties"]


def test_unregistered_logged_models_on_request(mlflow3, tmp_path):
    url, facts = mlflow3
    a, _ = ingest(url, tmp_path, include_logged_models=True)
    unregistered = f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,scorer_{facts[2][1]},PROD)"
    assert unregistered in a
    assert not any(f"scorer_{facts[i][1]}" in u for i in (0, 1) for u in a)  # registered ones are versions
    props = a[unregistered]["mlModelProperties"]
    assert props["trainingJobs"] == [run_urn(facts[2][0])]
    assert props["customProperties"]["mlflow#artifact_uri"].startswith("mlflow-artifacts:/")  # proxied store
    assert a[unregistered]["container"]["container"].startswith("urn:li:container:")
    # A metric names its dataset by name and digest only: the dataset's source comes from the run's
    # inputs, which the crawl does not hand over with an unregistered LoggedModel (yet). Keyed by
    # name (DataHub's way) the evaluation dataset is known without the run.
    by_name, _ = ingest(url, tmp_path, include_logged_models=True, dataset_urn="name")
    assert by_name[unregistered]["mlModelEvaluationData"] == {
        "evaluationData": [{"dataset": "urn:li:dataset:(urn:li:dataPlatform:mlflow,credit-holdout,PROD)"}]}


def test_incremental_run_keeps_unregistered_logged_models(mlflow3, tmp_path):
    url, facts = mlflow3
    config = {"pipeline_name": "mlflow3", "state": {"path": str(tmp_path / "state.json")},
              "source": {"type": "mlflow", "config": {"tracking_uri": url, "incremental": True,
                                                     "include_logged_models": True}}}
    reports = []
    for name in ("full.json", "incr.json"):
        recipe = parse_recipe({**config, "sink": {"type": "file", "config": {"filename": str(tmp_path / name)}}})
        reports.append(run_ingest(recipe))
        assert reports[-1].ok, reports[-1].failures
    assert [r.mode for r in reports] == ["full", "incremental"]
    assert reports[1].entities_removed == 0 and reports[1].proposals == 0
