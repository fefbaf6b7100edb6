"""A store for tests/test_mapping_values.py, seeded through the MLflow client: metrics over 50
steps with `log_model` at step 0, a later metric logged for the model itself, an evaluation
metric with its dataset, datasets read from local CSV files, an MLflow 2.x run whose signature
is only in its `mlflow.log-model.history` tag, and a model whose version listing can be refused."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

LEGACY_COLUMNS = [{"type": "double", "name": "tenure", "required": True},
                  {"type": "string", "name": "plan", "required": True}]
TRAIN_CSV = "/data/churn/train.csv"
EXTRA_CSV = "file:///data/churn/extra.csv"
HOLDOUT = "s3://ml-data/churn/holdout.parquet"


@dataclass
class ValuesStore:
    url: str
    experiment_id: str = ""
    experiment_artifacts: str = ""
    runs: dict = field(default_factory=dict)           # label -> run id
    model_ids: dict = field(default_factory=dict)      # label -> LoggedModel id
    artifact_uris: dict = field(default_factory=dict)  # label -> LoggedModel artifact URI
    holdout_digest: str = ""


def _legacy_history(run_id: str) -> str:
    """What MLflow 2.x's log_model writes into the run's `mlflow.log-model.history` tag."""
    return json.dumps([{
        "run_id": run_id, "artifact_path": "model", "utc_time_created": "2024-05-02 10:00:00.000000",
        "flavors": {"python_function": {"loader_module": "mlflow.sklearn", "python_version": "3.11.9"},
                    "sklearn": {"sklearn_version": "1.5.0", "serialization_format": "cloudpickle"}},
        "model_uuid": "5b0c1f0e2d7a4f4e9a6c1d2e3f405162", "mlflow_version": "2.16.2",
        "signature": {"inputs": json.dumps(LEGACY_COLUMNS),
                      "outputs": json.dumps([{"type": "long", "required": True}]), "params": None},
    }])


def _trained(store: ValuesStore, frame) -> None:
    import mlflow

    from tests.echo_model import Echo
    train = mlflow.data.from_pandas(frame, source=TRAIN_CSV, name="train_csv")
    extra = mlflow.data.from_pandas(frame, source=EXTRA_CSV, name="extra_csv")
    holdout = mlflow.data.from_pandas(frame.head(1), source=HOLDOUT, name="holdout")
    store.holdout_digest = holdout.digest
    with mlflow.start_run(experiment_id=store.experiment_id, run_name="trained") as run:
        mlflow.log_input(train, context="training")
        mlflow.log_input(extra, context="training")
        mlflow.log_param("lr", "0.1")
        mlflow.log_metric("loss", 1.0001, step=0)
        mlflow.log_metric("val_auc", 0.607, step=0)
        # MLflow 3 links the run's metrics as they stand now (step 0) to the LoggedModel
        model = mlflow.pyfunc.log_model(name="model", python_model=Echo(), step=0, pip_requirements=[])
        candidate = mlflow.pyfunc.log_model(name="candidate", python_model=Echo(), step=0, pip_requirements=[])
        for step in range(1, 50):
            mlflow.log_metric("loss", round(1.0 / (step + 1), 4), step=step)
            mlflow.log_metric("val_auc", round(0.6 + step * 0.006, 4), step=step)
        mlflow.log_metric("holdout_auc", 0.88, step=50, model_id=model.model_id, dataset=holdout)
    store.runs["trained"] = run.info.run_id
    store.model_ids.update(model=model.model_id, candidate=candidate.model_id)
    with mlflow.start_run(experiment_id=store.experiment_id, run_name="evaluation") as evaluation:
        mlflow.log_metric("val_auc", 0.95, step=100, model_id=model.model_id)  # for the model itself, later
    store.runs["evaluation"] = evaluation.info.run_id


def seed_values(url: str) -> ValuesStore:
    import mlflow  # here, not at import: the offline tests collect this module
    import pandas as pd
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    store = ValuesStore(url)
    store.experiment_id = client.create_experiment("values-exp", tags={"team": "ml"})
    store.experiment_artifacts = client.get_experiment(store.experiment_id).artifact_location
    _trained(store, pd.DataFrame({"tenure": [1.0, 2.0], "plan": ["a", "b"]}))
    for label, model_id in store.model_ids.items():
        store.artifact_uris[label] = client.get_logged_model(model_id).artifact_location
    mlflow.register_model(f"models:/{store.model_ids['model']}", "values-model")

    legacy = client.create_run(store.experiment_id, run_name="legacy")
    client.set_tag(legacy.info.run_id, "mlflow.log-model.history", _legacy_history(legacy.info.run_id))
    client.set_terminated(legacy.info.run_id)
    store.runs["legacy"] = legacy.info.run_id
    client.create_registered_model("legacy-model")
    client.create_model_version("legacy-model", f"runs:/{legacy.info.run_id}/model", run_id=legacy.info.run_id)

    client.create_registered_model("broken-model")
    client.create_model_version("broken-model", "s3://models/broken/1")
    return store
