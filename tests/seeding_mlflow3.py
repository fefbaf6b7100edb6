"""Populate an MLflow 3 server (artifacts proxied) with LoggedModels, signatures, datasets,
model cards and deprecation: the MLflow 3 tests and the golden scenarios share it."""
from __future__ import annotations

import warnings


def seed_mlflow3(url: str) -> dict:
    """Three runs each logging a pyfunc LoggedModel; the first two registered as credit_scorer
    v1 and v2. Returns {i: (run_id, model_id)}."""
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    warnings.filterwarnings("ignore")

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input["income"] * 2

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
    return facts
