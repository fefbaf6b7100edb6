"""The SDK takes DataHub's own aspect classes and enums: the seed tutorial's detailed calls, as
written there (`models.MLModelPropertiesClass(...)`, `RunResultType.FAILURE`, ...)."""
import datahub.metadata.schema_classes as models
import pytest
from datahub.metadata.com.linkedin.pegasus2avro.dataprocess import RunResultType

from connector.sdk import CatalogClient
from tests.catalog_validation import validate_file
from tests.expectations import exp_urn, group_urn, run_urn

MODEL = "urn:li:mlModel:(urn:li:dataPlatform:mlflow,arima_model,PROD)"


def tutorial_detailed_calls(client):
    """Copied from the tutorial's "Detailed Version" tabs, unchanged."""
    client.create_model_group(
        group_id="airline_forecast_models_group",
        properties=models.MLModelGroupPropertiesClass(
            name="Airline Forecast Models Group",
            description="Group of models for airline passenger forecasting",
            created=models.TimeStampClass(
                time=1628580000000, actor="urn:li:corpuser:datahub"
            ),
        ),
    )
    client.create_model(
        model_id="arima_model",
        properties=models.MLModelPropertiesClass(
            name="ARIMA Model",
            description="ARIMA model for airline passenger forecasting",
            customProperties={"team": "forecasting"},
            trainingMetrics=[
                models.MLMetricClass(name="accuracy", value="0.9"),
                models.MLMetricClass(name="precision", value="0.8"),
            ],
            hyperParams=[
                models.MLHyperParamClass(name="learning_rate", value="0.01"),
                models.MLHyperParamClass(name="batch_size", value="32"),
            ],
            externalUrl="https:localhost:5000",
            created=models.TimeStampClass(
                time=1628580000000, actor="urn:li:corpuser:datahub"
            ),
            lastModified=models.TimeStampClass(
                time=1628580000000, actor="urn:li:corpuser:datahub"
            ),
            tags=["forecasting", "arima"],
        ),
        version="1.0",
        alias="champion",
    )
    client.create_experiment(
        experiment_id="airline_forecast_experiment",
        properties=models.ContainerPropertiesClass(
            name="Airline Forecast Experiment",
            description="Experiment to forecast airline passenger numbers",
            customProperties={"team": "forecasting"},
            created=models.TimeStampClass(
                time=1628580000000, actor="urn:li:corpuser:datahub"
            ),
            lastModified=models.TimeStampClass(
                time=1628580000000, actor="urn:li:corpuser:datahub"
            ),
        ),
    )
    client.create_training_run(
        run_id="simple_training_run_4",
        properties=models.DataProcessInstancePropertiesClass(
            name="Simple Training Run 4",
            created=models.AuditStampClass(
                time=1628580000000, actor="urn:li:corpuser:datahub"
            ),
            customProperties={"team": "forecasting"},
        ),
        training_run_properties=models.MLTrainingRunPropertiesClass(
            id="simple_training_run_4",
            outputUrls=["s3://my-bucket/output"],
            trainingMetrics=[models.MLMetricClass(name="accuracy", value="0.9")],
            hyperParams=[models.MLHyperParamClass(name="learning_rate", value="0.01")],
            externalUrl="https:localhost:5000",
        ),
        run_result=RunResultType.FAILURE,
        start_timestamp=1628580000000,
        end_timestamp=1628580001000,
    )


def test_the_tutorials_detailed_calls_run_as_written(tmp_path):
    out = tmp_path / "tutorial.json"
    with CatalogClient.from_sink_config({"type": "file", "config": {"filename": str(out)}}) as client:
        tutorial_detailed_calls(client)
        model_urn, group = client.model_urn("arima_model"), client.model_group_urn("airline_forecast_models_group")
        run, experiment = client.run_urn("simple_training_run_4"), client.experiment_urn("airline_forecast_experiment")
        client.add_model_to_model_group(model_urn=model_urn, group_urn=group)
        client.add_run_to_experiment(run_urn=run, experiment_urn=experiment)
        client.add_run_to_model(model_urn=model_urn, run_urn=run)
        endpoint = client.create_deployment("arima-live", platform="sagemaker",
                                            properties=models.MLModelDeploymentPropertiesClass(
                                                status=models.DeploymentStatusClass.CREATING, description="live"))
        client.set_deployment_status(endpoint, models.DeploymentStatusClass.IN_SERVICE)
    a = {(r["entityUrn"], r["aspectName"]): r["aspect"]["json"] for r in validate_file(out)}
    stamp = {"time": 1628580000000, "actor": "urn:li:corpuser:datahub"}
    assert a[(group_urn("airline_forecast_models_group"), "mlModelGroupProperties")] == {
        "name": "Airline Forecast Models Group", "created": stamp,
        "description": "Group of models for airline passenger forecasting"}
    model = a[(MODEL, "mlModelProperties")]
    assert model["name"] == "ARIMA Model" and model["customProperties"] == {"team": "forecasting"}
    assert model["trainingMetrics"] == [{"name": "accuracy", "value": "0.9"}, {"name": "precision", "value": "0.8"}]
    assert model["hyperParams"] == [{"name": "learning_rate", "value": "0.01"}, {"name": "batch_size", "value": "32"}]
    assert model["tags"] == ["forecasting", "arima"] and model["lastModified"] == stamp
    assert model["groups"] == [group_urn("airline_forecast_models_group")]
    assert model["trainingJobs"] == [run_urn("simple_training_run_4")]
    assert a[(MODEL, "versionProperties")]["aliases"] == [{"versionTag": "champion"}]
    container = a[(exp_urn("airline_forecast_experiment"), "containerProperties")]
    assert container["name"] == "Airline Forecast Experiment" and container["customProperties"] == {"team": "forecasting"}
    run_props = a[(run_urn("simple_training_run_4"), "dataProcessInstanceProperties")]
    assert run_props["name"] == "Simple Training Run 4" and run_props["created"] == stamp
    training = a[(run_urn("simple_training_run_4"), "mlTrainingRunProperties")]
    assert training["outputUrls"] == ["s3://my-bucket/output"] and training["id"] == "simple_training_run_4"
    assert a[(endpoint, "mlModelDeploymentProperties")] == {"status": "IN_SERVICE", "description": "live"}
    events = [r for r in validate_file(out) if r["aspectName"] == "dataProcessInstanceRunEvent"]
    assert [e["aspect"]["json"]["status"] for e in events] == ["STARTED", "COMPLETE"]
    assert events[1]["aspect"]["json"]["result"]["type"] == "FAILURE"
    assert events[1]["aspect"]["json"]["durationMillis"] == 1000


def test_a_datahub_class_of_another_aspect_is_refused_by_name(tmp_path):
    client = CatalogClient.from_sink_config({"type": "file", "config": {"filename": str(tmp_path / "x.json")}})
    with pytest.raises(TypeError, match="properties: expected mlModelProperties properties, got ContainerPropertiesClass"):
        client.create_model("m", version="1", properties=models.ContainerPropertiesClass(name="x"))
    with pytest.raises(TypeError, match="expected ModelGroupProperties or DataHub's mlModelGroupProperties class, got dict"):
        client.create_model_group("g", properties={"name": "g"})
    client.abort()
