"""The SDK: the tutorial's flow end to end through the file sink and the REST sink (against the
test catalog server with its read API), and links that are merged, never overwritten."""
import json

import pytest
from datahub.emitter.serialization_helper import pre_json_transform
from datahub.metadata import schema_classes

from connector.config.recipe import RecipeError
from connector.sdk import CatalogClient, DeploymentStatus, ModelProperties, RunResult
from connector.sdk.merge import normalise_restli
from examples.tutorial import main as tutorial_main, tutorial_flow
from tests.catalog_server import CatalogServer
from tests.catalog_validation import validate_file
from tests.expectations import _guid, exp_urn, group_urn, run_urn

MODEL = "urn:li:mlModel:(urn:li:dataPlatform:mlflow,arima_model,PROD)"
GROUP = group_urn("airline_forecast_models_group")
RUN = run_urn("simple_training_run_4")
EXPERIMENT = exp_urn("airline_forecast_experiment")
TRAIN = "urn:li:dataset:(urn:li:dataPlatform:s3,airline/passengers/train.csv,PROD)"
FORECAST = "urn:li:dataset:(urn:li:dataPlatform:snowflake,analytics.forecasts.passengers,PROD)"
DEPLOYMENT = "urn:li:mlModelDeployment:(urn:li:dataPlatform:sagemaker,airline-forecast-endpoint,PROD)"


def file_client(path):
    return CatalogClient.from_sink_config({"type": "file", "config": {"filename": str(path)}})


def rest_client(server, tmp_path):
    return CatalogClient.from_sink_config({"type": "datahub-rest", "config": {
        "server": server.url, "dead_letter_file": str(tmp_path / "dead.json"), "max_retries": 1,
        "retry_backoff_sec": 0.01}})


def latest(records):
    """(urn, aspect) -> the value the catalog keeps (the last one written)."""
    return {(r["entityUrn"], r["aspectName"]): r["aspect"]["json"] for r in records}


def assert_tutorial_links(aspect):
    """The reads the tutorial shows, one by one."""
    model = aspect(MODEL, "mlModelProperties")
    assert model["groups"] == [GROUP]                                   # model's groups
    assert model["trainingJobs"] == [RUN]                               # model's training jobs
    assert model["deployments"] == [DEPLOYMENT]                         # model's deployments
    assert aspect(RUN, "container") == {"container": EXPERIMENT}        # run's experiment
    assert aspect(GROUP, "mlModelGroupProperties")["trainingJobs"] == [RUN]  # group's training jobs
    assert aspect(RUN, "dataProcessInstanceInput") == {"inputs": [TRAIN], "inputEdges": [{"destinationUrn": TRAIN}]}
    assert aspect(RUN, "dataProcessInstanceOutput") == {
        "outputs": [FORECAST], "outputEdges": [{"destinationUrn": FORECAST}]}
    # and the properties the tutorial set
    assert model["name"] == "ARIMA Model" and model["version"] == {"versionTag": "1.0"}
    assert model["trainingMetrics"] == [{"name": "accuracy", "value": "0.9"}, {"name": "precision", "value": "0.8"}]
    assert {p["name"]: p["value"] for p in model["hyperParams"]} == {"learning_rate": "0.01", "batch_size": "32"}
    version = aspect(MODEL, "versionProperties")
    assert version["aliases"] == [{"versionTag": "champion"}] and version["version"] == {"versionTag": "1.0"}
    assert version["versionSet"] == f"urn:li:versionSet:({_guid({'platform': 'mlflow', 'name': 'arima_model'})},mlModel)"
    assert aspect(EXPERIMENT, "containerProperties")["name"] == "Airline Forecast Experiment"
    assert aspect(EXPERIMENT, "subTypes") == {"typeNames": ["ML Experiment"]}
    assert aspect(RUN, "subTypes") == {"typeNames": ["ML Training Run"]}
    assert aspect(RUN, "dataProcessInstanceProperties")["created"] == {
        "time": 1628580000000, "actor": "urn:li:corpuser:datahub"}
    assert aspect(RUN, "mlTrainingRunProperties")["outputUrls"] == ["s3://my-bucket/output"]
    deployment = aspect(DEPLOYMENT, "mlModelDeploymentProperties")
    assert deployment["status"] == "IN_SERVICE"  # set_deployment_status after CREATING
    assert deployment["version"] == {"versionTag": "1.0"} and deployment["createdAt"] == 1628580005000
    assert deployment["customProperties"] == {"instance_type": "ml.m5.large"}
    assert aspect(DEPLOYMENT, "dataPlatformInstance") == {"platform": "urn:li:dataPlatform:sagemaker"}


def test_tutorial_through_the_file_sink(tmp_path):
    out = tmp_path / "tutorial.json"
    with file_client(out) as client:
        created = tutorial_flow(client)
    assert created == {"model_group": GROUP, "model": MODEL, "experiment": EXPERIMENT, "run": RUN,
                       "input_dataset": TRAIN, "output_dataset": FORECAST, "deployment": DEPLOYMENT}
    records = validate_file(out)  # datahub check metadata-file + every aspect's schema class
    values = latest(records)
    assert_tutorial_links(lambda urn, name: values[(urn, name)])
    # one final value per aspect, plus the run's two events
    keys = [(r["entityUrn"], r["aspectName"]) for r in records]
    assert len(keys) - len(set(keys)) == 1
    events = [r["aspect"]["json"] for r in records if r["aspectName"] == "dataProcessInstanceRunEvent"]
    assert events[0] == {"timestampMillis": 1628580000000, "status": "STARTED", "attempt": 1}
    assert events[1]["result"] == {"type": "FAILURE", "nativeResultType": "mlflow"}
    assert events[1]["durationMillis"] == 1000


def test_make_example_writes_the_flow(tmp_path, capsys):
    out = tmp_path / "example.json"
    assert tutorial_main([str(out)]) == 0
    printed = capsys.readouterr().out
    assert MODEL in printed and DEPLOYMENT in printed
    assert len(validate_file(out)) == len(json.loads(out.read_text()))


def test_file_sink_links_merge_with_what_the_client_wrote(tmp_path):
    out = tmp_path / "merge.json"
    with file_client(out) as client:
        model = client.create_model("m", 3, properties=ModelProperties(description="d", tags=["x"]))
        first, second = client.create_model_group("g1"), client.create_model_group("g2")
        client.add_model_to_model_group(model, first)
        client.add_model_to_model_group(model, second)
        client.add_model_to_model_group(model, first)  # again: no duplicate
        client.add_run_to_model(model, client.run_urn("r1"))
        client.add_run_to_model(model, client.run_urn("r2"))
        client.create_model("m", 3, alias="champion", properties=ModelProperties(name="M"))
    props = latest(validate_file(out))[(model, "mlModelProperties")]
    assert props["groups"] == [first, second]
    assert props["trainingJobs"] == [run_urn("r1"), run_urn("r2")]
    assert (props["name"], props["description"], props["tags"]) == ("M", "d", ["x"])
    assert latest(json.loads(out.read_text()))[(model, "versionProperties")]["sortId"] == "0000000003"


def test_tutorial_through_the_rest_sink_merges_with_the_catalog(tmp_path):
    with CatalogServer() as server:
        with rest_client(server, tmp_path) as client:
            tutorial_flow(client)
        assert server.problems == []  # every proposal validated with acryl-datahub
        assert_tutorial_links(lambda urn, name: server.store[(urn, name)])
        before = server.store[(MODEL, "mlModelProperties")]

        # A new client knows nothing of what was written: it must read the catalog first.
        recipe = tmp_path / "recipe.yml"
        recipe.write_text(f"""
source: {{type: mlflow, config: {{tracking_uri: http://mlflow:5000}}}}
sink: {{type: datahub-rest, config: {{server: {server.url}, dead_letter_file: {tmp_path / 'dead2.json'}}}}}
""")
        with CatalogClient.from_recipe(recipe) as again:
            other_group = again.create_model_group("another_group")
            again.add_model_to_model_group(MODEL, other_group)
        props = server.store[(MODEL, "mlModelProperties")]
        assert props["groups"] == [GROUP, other_group]  # the first group is kept
        assert {k: v for k, v in props.items() if k != "groups"} == \
            {k: v for k, v in before.items() if k != "groups"}
        reads = [r["path"] for r in server.requests if r["method"] == "GET" and r["path"].startswith("/aspects/")]
        assert any("mlModelProperties" in p for p in reads)

        second_run = run_urn("retrain_5")
        with rest_client(server, tmp_path) as third:
            assert third.create_training_run("retrain_5", run_result=RunResult.SUCCESS,
                                             start_timestamp=10, end_timestamp=20) == second_run
            third.add_run_to_model(MODEL, second_run)
            third.add_run_to_model_group(GROUP, second_run)
            third.set_deployment_status(DEPLOYMENT, DeploymentStatus.OUT_OF_SERVICE)
        after = server.store[(MODEL, "mlModelProperties")]
        assert after["trainingJobs"] == [RUN, second_run]  # the first run is kept
        assert {k: v for k, v in after.items() if k != "trainingJobs"} == \
            {k: v for k, v in props.items() if k != "trainingJobs"}  # and every other property
        assert server.store[(GROUP, "mlModelGroupProperties")]["trainingJobs"] == [RUN, second_run]
        assert server.store[(GROUP, "mlModelGroupProperties")]["name"] == "Airline Forecast Models Group"
        deployment = server.store[(DEPLOYMENT, "mlModelDeploymentProperties")]
        assert deployment["status"] == "OUT_OF_SERVICE" and deployment["description"] == "Real-time passenger forecasts"
        assert server.problems == []
    assert not (tmp_path / "dead.json").exists()


def test_restli_union_names_are_normalised():
    """GMS may answer unions under `com.linkedin.pegasus2avro.*`; the JSON form says `com.linkedin.*`."""
    schema = schema_classes.SchemaMetadataClass(
        schemaName="t", platform="urn:li:dataPlatform:mlflow", version=0, hash="",
        platformSchema=schema_classes.OtherSchemaClass(rawSchema="{}"),
        fields=[schema_classes.SchemaFieldClass(
            fieldPath="a", nativeDataType="long",
            type=schema_classes.SchemaFieldDataTypeClass(type=schema_classes.NumberTypeClass()))])
    avro_form = schema.to_obj()
    assert "com.linkedin.pegasus2avro.schema.OtherSchema" in avro_form["platformSchema"]
    assert normalise_restli(avro_form) == pre_json_transform(avro_form)


def test_arguments_are_checked(tmp_path):
    with file_client(tmp_path / "x.json") as client:
        model = client.create_model("m", "1")
        with pytest.raises(ValueError, match="group_urn: expected a mlModelGroup URN"):
            client.add_model_to_model_group(model, model)
        with pytest.raises(ValueError):
            client.set_deployment_status(client.deployment_urn("kserve", "d"), "LIVE")
        with pytest.raises(ValueError):
            ModelProperties(nmae="typo")
    with pytest.raises(RecipeError, match="sink.file.config.filename|filename"):
        CatalogClient.from_sink_config({"type": "file", "config": {}})
