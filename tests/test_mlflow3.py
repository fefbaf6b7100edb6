"""MLflow 3 in depth against a real server (artifacts proxied through it, mlflow-artifacts:/):
LoggedModels, evaluation and training data, signatures as features, model cards from tags,
deprecation, isLatest."""
import pytest

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from tests.catalog_validation import validate_file
from tests.expectations import dataset_urn, group_urn, model_urn, run_urn
from tests.mlflow_server import mlflow_server
from tests.seeding_mlflow3 import seed_mlflow3

pytestmark = pytest.mark.server
TRAIN = dataset_urn("credit-train", "s3", "s3://credit/train.parquet")
HOLDOUT = dataset_urn("credit-holdout", "s3", "s3://credit/holdout.parquet")


@pytest.fixture(scope="module")
def mlflow3(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow3"), proxy_artifacts=True) as url:
        yield url, seed_mlflow3(url)


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
    # the crawl hands over its run: training data, the evaluation dataset by source, the run's output
    assert a[unregistered]["mlModelTrainingData"] == {"trainingData": [{"dataset": TRAIN}]}
    assert a[unregistered]["mlModelEvaluationData"] == {"evaluationData": [{"dataset": HOLDOUT}]}
    outputs = a[run_urn(facts[2][0])]["dataProcessInstanceOutput"]["outputEdges"]
    assert [e["destinationUrn"] for e in outputs] == [unregistered]
    # keyed by name (DataHub's way) the evaluation dataset is the name-only URN
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
