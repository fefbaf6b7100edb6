"""An MLflow populated the way a data-science team does it, through the MLflow client: sklearn
models logged with signatures (MLflow 3 LoggedModels), pandas datasets from S3 paths, two
different datasets both named `train`, unnamed datasets (MLflow calls them all `dataset`),
nested tuning runs, evaluation metrics logged with `log_metric(..., model_id=, dataset=)`, a
scheduled job MLflow knows no user of, reading a Redshift table, whose model's MLmodel carries
a partly broken signature, and user tags that share names with built-in properties."""
from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REDSHIFT_TABLE = "dev.public.transactions"


@dataclass
class Team:
    url: str
    experiments: dict = field(default_factory=dict)   # label -> experiment id
    runs: dict = field(default_factory=dict)          # label -> run id
    model_ids: dict = field(default_factory=dict)     # label -> LoggedModel id


def _frames():
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    churn = pd.DataFrame({"tenure": rng.integers(1, 60, 40).astype("float64"),
                          "monthly_spend": rng.normal(50, 10, 40)})
    churn["churned"] = (churn["tenure"] < 20).astype("int64")
    fraud = pd.DataFrame({"amount": rng.normal(100, 30, 40), "hour": rng.integers(0, 24, 40).astype("float64")})
    fraud["is_fraud"] = (fraud["amount"] > 120).astype("int64")
    return churn, fraud


def _fit(frame, target, **params):
    from sklearn.linear_model import LogisticRegression

    features = frame.drop(columns=[target])
    return features, LogisticRegression(max_iter=200, **params).fit(features, frame[target])


def _log_sklearn(model, features):
    import mlflow
    from mlflow.models import infer_signature

    return mlflow.sklearn.log_model(model, name="model", signature=infer_signature(features, model.predict(features)),
                                    input_example=features.head(2))


def _tuning(team: Team, churn, datasets) -> None:
    """A parent run with two nested trials, each a LoggedModel evaluated on the test set."""
    import mlflow

    with mlflow.start_run(experiment_id=team.experiments["churn"], run_name="churn-tuning") as parent:
        mlflow.set_tags({"status": "candidate", "experiment_id": "sprint-12", "reviewed": ""})
        team.runs["parent"] = parent.info.run_id
        for label, c in (("trial_a", 0.1), ("trial_b", 1.0)):
            with mlflow.start_run(experiment_id=team.experiments["churn"], run_name=f"C={c}", nested=True) as run:
                mlflow.log_param("C", c)
                mlflow.log_input(datasets["churn_train"], context="training")
                mlflow.log_input(datasets["churn_extra"], context="training")
                features, model = _fit(churn, "churned", C=c)
                info = _log_sklearn(model, features)
                mlflow.log_metric("accuracy", float(model.score(features, churn["churned"])),
                                  model_id=info.model_id, dataset=datasets["churn_test"])
                mlflow.log_metric("train_loss", 0.25, model_id=info.model_id)
                team.runs[label], team.model_ids[label] = run.info.run_id, info.model_id


def _fraud(team: Team, fraud, datasets) -> None:
    import mlflow

    with mlflow.start_run(experiment_id=team.experiments["fraud"], run_name="fraud-lr") as run:
        mlflow.log_input(datasets["fraud_train"], context="training")
        mlflow.log_input(datasets["fraud_extra"], context="training")
        features, model = _fit(fraud, "is_fraud")
        info = _log_sklearn(model, features)
        mlflow.log_metric("accuracy", float(model.score(features, fraud["is_fraud"])), model_id=info.model_id,
                          dataset=datasets["fraud_test"])
        team.runs["fraud"], team.model_ids["fraud"] = run.info.run_id, info.model_id


def _scheduled_job(team: Team, client) -> None:
    """A job that logs through the bare client (MLflow records the user `unknown`), reads a
    Redshift table (a source type MLflow has no class for) and writes its model by hand."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    run = client.create_run(team.experiments["fraud"], run_name="nightly-retrain")
    team.runs["nightly"] = run.info.run_id
    schema = json.dumps({"mlflow_colspec": [{"type": "double", "name": "amount"}, {"type": "long", "name": "hour"}]})
    client.log_inputs(run.info.run_id, datasets=[DatasetInput(
        Dataset(name="transactions", digest="5f1c0de", source_type="redshift",
                source=json.dumps({"table_name": REDSHIFT_TABLE}), schema=schema),
        tags=[InputTag("mlflow.data.context", "training")])])
    signature = {"inputs": json.dumps([
        {"type": "double", "name": "amount", "required": True},
        {"type": "double", "required": True},            # unnamed: cannot be a feature
        "hour",                                           # malformed
        {"type": "long", "name": "hour", "required": True}]),
        "outputs": json.dumps([{"type": "long", "required": True}])}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "MLmodel").write_text(yaml.safe_dump({"flavors": {}, "signature": signature}))
        client.log_artifacts(run.info.run_id, tmp, "model")
    client.set_terminated(run.info.run_id)


def seed_team(url: str) -> Team:
    import mlflow
    from mlflow import MlflowClient

    warnings.filterwarnings("ignore")
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    team = Team(url)
    team.experiments["churn"] = client.create_experiment(
        "churn", tags={"experiment_id": "legacy-7", "platform": "ml-platform-v2", "owner_note": ""})
    team.experiments["fraud"] = client.create_experiment("fraud")
    churn, fraud = _frames()
    data = mlflow.data.from_pandas
    datasets = {
        "churn_train": data(churn, source="s3://acme-ml/churn/train.parquet", name="train"),
        "churn_test": data(churn.tail(10), source="s3://acme-ml/churn/test.parquet", name="test"),
        "churn_extra": data(churn.head(5), source="s3://acme-ml/churn/extra.parquet"),  # named `dataset`
        "fraud_train": data(fraud, source="s3://acme-ml/fraud/2024/train.parquet", name="train"),
        "fraud_test": data(fraud.tail(10), source="s3://acme-ml/fraud/2024/test.parquet", name="test"),
        "fraud_extra": data(fraud.head(5), source="s3://acme-ml/fraud/extra.parquet"),  # named `dataset`
    }
    _tuning(team, churn, datasets)
    _fraud(team, fraud, datasets)
    _scheduled_job(team, client)
    # the better trial is registered and champion; trial_a's model stays an unregistered LoggedModel
    mlflow.register_model(f"models:/{team.model_ids['trial_b']}", "churn_classifier")
    client.set_registered_model_alias("churn_classifier", "champion", "1")
    mlflow.register_model(f"models:/{team.model_ids['fraud']}", "fraud_detector")
    client.create_model_version("fraud_detector", f"runs:/{team.runs['nightly']}/model", run_id=team.runs["nightly"])
    return team
