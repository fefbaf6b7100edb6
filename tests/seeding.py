"""Populate an MLflow store through the MLflow client with the cases the tests check."""
from __future__ import annotations

from dataclasses import dataclass, field

LONG_PARAM = "x" * 5000
ODD_EXPERIMENT = "fraud,v2 (beta) — ünïcødé"
ODD_MODEL = "fraud,v2 (beta)"


@dataclass
class Seeded:
    runs: dict = field(default_factory=dict)          # label -> run_id
    experiments: dict = field(default_factory=dict)   # label -> experiment_id


def seed(tracking_uri: str) -> Seeded:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import RunStatus

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    out = Seeded()

    churn = client.create_experiment("churn-training", tags={"mlflow.note.content": "Churn models", "team": "growth"})
    odd = client.create_experiment(ODD_EXPERIMENT)
    old = client.create_experiment("old-experiment")
    out.experiments.update(churn=churn, odd=odd, old=old, default="0")

    train = mlflow.data.from_pandas(
        pd.DataFrame({"age": [30, 40], "income": [1.5, 2.5], "churned": [True, False]}),
        source="s3://ml-data/churn/train.parquet", name="churn_train")
    evaluation = mlflow.data.from_pandas(
        pd.DataFrame({"age": [35], "income": [2.0], "churned": [False]}),
        source="gs://ml-data/churn/eval.parquet", name="churn_eval")

    with mlflow.start_run(experiment_id=churn, run_name="baseline") as run:
        mlflow.log_params({"lr": "0.1", "blob": LONG_PARAM})
        mlflow.log_metrics({"accuracy": 0.91, "loss_nan": float("nan"), "loss_inf": float("inf")})
        mlflow.log_input(train, context="training")
        mlflow.log_input(evaluation, context="eval")
        out.runs["baseline"] = run.info.run_id
    with mlflow.start_run(experiment_id=churn, run_name="tuned") as run:
        mlflow.log_param("lr", "0.01")
        mlflow.log_metric("accuracy", 0.93)
        mlflow.log_input(train, context="training")
        out.runs["tuned"] = run.info.run_id
    client.set_terminated(out.runs["tuned"], status=RunStatus.to_string(RunStatus.FAILED))

    running = client.create_run(churn, run_name="still-running")
    out.runs["running"] = running.info.run_id
    killed = client.create_run(churn, run_name="killed")
    client.set_terminated(killed.info.run_id, status="KILLED")
    out.runs["killed"] = killed.info.run_id
    deleted = client.create_run(churn, run_name="deleted-run")
    client.set_terminated(deleted.info.run_id)
    client.delete_run(deleted.info.run_id)
    out.runs["deleted"] = deleted.info.run_id

    with mlflow.start_run(experiment_id=odd, run_name="fraud ünï (1)") as run:
        mlflow.log_param("depth", "7")
        out.runs["odd"] = run.info.run_id
    with mlflow.start_run(experiment_id="0") as run:  # Default experiment, no run name given
        mlflow.log_metric("score", 1.0)
        out.runs["default"] = run.info.run_id
    with mlflow.start_run(experiment_id=old, run_name="old-run") as run:
        out.runs["old"] = run.info.run_id
    client.delete_experiment(old)

    client.create_registered_model("churn_model", tags={"domain": "growth"}, description="Predicts churn")
    baseline, tuned = out.runs["baseline"], out.runs["tuned"]
    client.create_model_version("churn_model", f"runs:/{baseline}/model", run_id=baseline,
                                tags={"framework": "sklearn"}, description="first")
    client.create_model_version("churn_model", f"runs:/{baseline}/model_b", run_id=baseline)
    client.create_model_version("churn_model", f"runs:/{tuned}/model", run_id=tuned)
    client.set_registered_model_alias("churn_model", "champion", "1")
    client.set_registered_model_alias("churn_model", "challenger", "3")
    client.set_registered_model_alias("churn_model", "stable", "1")
    client.transition_model_version_stage("churn_model", "1", "Production")
    client.transition_model_version_stage("churn_model", "3", "Staging")

    client.create_registered_model(ODD_MODEL)
    client.create_model_version(ODD_MODEL, f"runs:/{out.runs['odd']}/model", run_id=out.runs["odd"])
    client.create_model_version(ODD_MODEL, "s3://models/fraud/manual")  # a version with no run
    return out


def new_run(client, exp_id: str, name: str) -> str:
    """A finished run with a param and a metric, through an MlflowClient; its id."""
    run = client.create_run(exp_id, run_name=name)
    client.log_param(run.info.run_id, "lr", "0.1")
    client.log_metric(run.info.run_id, "acc", 0.5)
    client.set_terminated(run.info.run_id)
    return run.info.run_id
