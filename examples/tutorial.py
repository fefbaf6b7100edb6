"""The "ML system with DataHub" tutorial, through this connector's SDK: a model group, a model
with a version and an alias, an experiment, a training run with params, metrics and result,
its input and output datasets, every link, and a deployment serving the model.

    python -m examples.tutorial [OUTPUT]        # default out/example.json (the demo's file sink)
"""
from __future__ import annotations

import sys

from connector.sdk import (
    CatalogClient, DeploymentProperties, DeploymentStatus, ExperimentProperties, ModelGroupProperties,
    ModelProperties, RunProperties, RunResult, TimeStamp, TrainingRunProperties,
)

T0 = 1628580000000  # the tutorial's timestamps
ACTOR = "urn:li:corpuser:datahub"


def tutorial_flow(client: CatalogClient) -> dict[str, str]:
    """Create and link everything; return the URNs by role."""
    group = client.create_model_group(
        group_id="airline_forecast_models_group",
        properties=ModelGroupProperties(
            name="Airline Forecast Models Group",
            description="Group of models for airline passenger forecasting",
            created=TimeStamp(time=T0, actor=ACTOR)))
    model = client.create_model(
        model_id="arima_model", version="1.0", alias="champion",
        properties=ModelProperties(
            name="ARIMA Model", description="ARIMA model for airline passenger forecasting",
            custom_properties={"team": "forecasting"},
            training_metrics={"accuracy": "0.9", "precision": "0.8"},
            hyper_params={"learning_rate": "0.01", "batch_size": "32"},
            external_url="https://localhost:5000",
            created=TimeStamp(time=T0, actor=ACTOR), last_modified=TimeStamp(time=T0, actor=ACTOR),
            tags=["forecasting", "arima"]))
    experiment = client.create_experiment(
        experiment_id="airline_forecast_experiment",
        properties=ExperimentProperties(
            name="Airline Forecast Experiment",
            description="Experiment to forecast airline passenger numbers",
            custom_properties={"team": "forecasting"},
            created=TimeStamp(time=T0, actor=ACTOR), last_modified=TimeStamp(time=T0, actor=ACTOR)))
    run = client.create_training_run(
        run_id="simple_training_run_4",
        properties=RunProperties(name="Simple Training Run 4", created=TimeStamp(time=T0, actor=ACTOR),
                                 custom_properties={"team": "forecasting"}),
        training_run_properties=TrainingRunProperties(
            id="simple_training_run_4", output_urls=["s3://my-bucket/output"],
            training_metrics={"accuracy": 0.9}, hyper_params={"learning_rate": "0.01"},
            external_url="https://localhost:5000"),
        run_result=RunResult.FAILURE, start_timestamp=T0, end_timestamp=T0 + 1000)
    train = client.dataset_urn("s3", "airline/passengers/train.csv")
    forecast = client.dataset_urn("snowflake", "analytics.forecasts.passengers")
    deployment = client.create_deployment(
        name="airline-forecast-endpoint", platform="sagemaker",
        properties=DeploymentProperties(
            description="Real-time passenger forecasts", status=DeploymentStatus.CREATING,
            version="1.0", created_at=T0 + 5000, external_url="https://console.aws.amazon.com/sagemaker",
            custom_properties={"instance_type": "ml.m5.large"}))

    client.add_model_to_model_group(model_urn=model, group_urn=group)
    client.add_run_to_experiment(run_urn=run, experiment_urn=experiment)
    client.add_run_to_model(model_urn=model, run_urn=run)
    client.add_run_to_model_group(model_group_urn=group, run_urn=run)
    client.add_input_datasets_to_run(run_urn=run, dataset_urns=[train])
    client.add_output_datasets_to_run(run_urn=run, dataset_urns=[forecast])
    client.add_deployment_to_model(model_urn=model, deployment_urn=deployment)
    client.set_deployment_status(deployment, DeploymentStatus.IN_SERVICE)
    return {"model_group": group, "model": model, "experiment": experiment, "run": run,
            "input_dataset": train, "output_dataset": forecast, "deployment": deployment}


def main(argv: list[str]) -> int:
    output = argv[0] if argv else "out/example.json"
    with CatalogClient.from_sink_config({"type": "file", "config": {"filename": output}}) as client:
        created = tutorial_flow(client)
    for role, urn in created.items():
        print(f"{role:15} {urn}")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
