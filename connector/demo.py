"""Seed a small, realistic MLflow store for `make demo` (needs the `server` extra).

    python -m connector.demo PATH/mlflow.db
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

EXPERIMENTS = {
    "churn-prediction": ("Customer churn models for the subscriptions team", "s3://acme-ml/churn/train.parquet"),
    "fraud-detection": ("Card-not-present fraud scoring", "s3://acme-ml/fraud/transactions.parquet"),
    "demand-forecast": ("Weekly demand per store", "gs://acme-forecast/demand/history.csv"),
}
# registered model -> (experiment, number of training runs, aliases as {alias: version})
MODELS = {
    "churn-classifier": ("churn-prediction", 3, {"champion": 2, "challenger": 3}),
    "fraud-detector": ("fraud-detection", 2, {"champion": 1, "challenger": 2}),
    "demand-forecaster": ("demand-forecast", 1, {"champion": 1}),
}


def seed(db_path: str) -> None:
    import logging
    import warnings

    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    warnings.filterwarnings("ignore")  # MLflow's schema-inference hints are noise here
    logging.getLogger("mlflow").setLevel(logging.WARNING)

    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{db_path}"
    artifacts = Path(db_path).resolve().parent / "artifacts"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    rng = random.Random(7)
    runs_by_experiment: dict[str, list[str]] = {}
    for name, (note, source) in EXPERIMENTS.items():
        exp_id = client.create_experiment(name, artifact_location=(artifacts / name).as_uri(),
                                          tags={"mlflow.note.content": note, "team": name.split("-")[0]})
        frame = pd.DataFrame({"feature_a": [rng.random() for _ in range(20)],
                              "feature_b": [rng.randint(0, 9) for _ in range(20)],
                              "label": [rng.random() > 0.5 for _ in range(20)]})
        dataset = mlflow.data.from_pandas(frame, source=source, name=f"{name}-train")  # type: ignore[attr-defined]
        runs_by_experiment[name] = []
        for i in range(4):
            with mlflow.start_run(experiment_id=exp_id, run_name=f"{name}-run-{i + 1}") as run:
                mlflow.log_params({"learning_rate": str(round(0.1 / (i + 1), 4)), "max_depth": str(4 + i),
                                   "n_estimators": str(100 * (i + 1))})
                mlflow.log_metrics({"accuracy": round(0.8 + 0.03 * i + rng.random() / 100, 4),
                                    "f1": round(0.75 + 0.03 * i, 4)})
                mlflow.log_input(dataset, context="training")
                runs_by_experiment[name].append(run.info.run_id)
        # one failed run per experiment
        with mlflow.start_run(experiment_id=exp_id, run_name=f"{name}-oom") as run:
            mlflow.log_param("learning_rate", "1.0")
        client.set_terminated(run.info.run_id, status="FAILED")

    for model, (experiment, versions, aliases) in MODELS.items():
        client.create_registered_model(model, tags={"owner_team": experiment.split("-")[0]},
                                       description=f"{model} for {EXPERIMENTS[experiment][0].lower()}")
        for v in range(versions):
            run_id = runs_by_experiment[experiment][v + 1]
            client.create_model_version(model, f"runs:/{run_id}/model", run_id=run_id,
                                        description=f"trained by run {v + 2} of {experiment}")
        for alias, version in aliases.items():
            client.set_registered_model_alias(model, alias, str(version))
    # a model card from tags, and an archived version (deprecated, replaced by the champion)
    for key, value in {
        "card.intended_use.primary_uses": "monthly churn risk scoring; retention campaign targeting",
        "card.intended_use.primary_users": "ENTERPRISE",
        "card.ethics.risks_and_harms": "customers wrongly flagged receive unneeded offers",
        "card.caveats.description": "trained on subscription customers only",
    }.items():
        client.set_registered_model_tag("churn-classifier", key, value)
    client.transition_model_version_stage("churn-classifier", "1", "Archived")
    print(f"seeded {uri}: {len(EXPERIMENTS)} experiments, {5 * len(EXPERIMENTS)} runs, "
          f"{len(MODELS)} registered models")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m connector.demo PATH/mlflow.db")
    seed(sys.argv[1])
