"""The SDK and scheduled ingestion write the same aspects and compose: SDK links (a deployment
on a version, an output dataset on a run), then a full crawl, then SDK links again, against
a real MLflow server and the stand-in GMS; every link and every ingested field is there at
the end. With the file sink the SDK refuses a merge it cannot make."""
import json

import pytest

from connector.mapping import urns
from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from connector.send import run_send
from connector.sdk import CatalogClient, DeploymentStatus
from connector.sinks.base import SinkError
from tests.catalog_server import CatalogServer
from tests.catalog_validation import validate_file
from tests.mlflow_server import mlflow_server

V1 = "urn:li:mlModel:(urn:li:dataPlatform:mlflow,churn_1,PROD)"
V2 = "urn:li:mlModel:(urn:li:dataPlatform:mlflow,churn_2,PROD)"
GROUP = "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,churn,PROD)"
CHAMPION = "urn:li:mlModelDeployment:(urn:li:dataPlatform:sagemaker,churn-champion,PROD)"
SHADOW = "urn:li:mlModelDeployment:(urn:li:dataPlatform:kserve,churn-shadow,PROD)"
CANARY = "urn:li:mlModelDeployment:(urn:li:dataPlatform:sagemaker,churn-canary-eu,PROD)"
SCORES = "urn:li:dataset:(urn:li:dataPlatform:snowflake,analytics.churn.scores,PROD)"
REPORT = "urn:li:dataset:(urn:li:dataPlatform:s3,reports/churn.html,PROD)"
RULES = [{"alias": "champion", "platform": "sagemaker", "name_template": "{model}-{alias}"}]


def _ingest(url, server, tmp_path, name):
    recipe = parse_recipe({
        "source": {"type": "mlflow", "config": {"tracking_uri": url, "deployments": RULES}},
        "sink": {"type": "datahub-rest", "config": {"server": server.url, "max_retries": 1,
                                                    "dead_letter_file": str(tmp_path / f"{name}-dead.json")}}})
    report = run_ingest(recipe)
    assert report.ok, report
    assert not (tmp_path / f"{name}-dead.json").exists()


def _sdk(server, tmp_path):
    return CatalogClient.from_sink_config({"type": "datahub-rest", "config": {
        "server": server.url, "dead_letter_file": str(tmp_path / "sdk-dead.json"), "max_retries": 1}})


def _seed(url):
    """A run with params and metrics that registered two versions of `churn`; champion on 1."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    experiment = client.create_experiment("churn-training")
    run = client.create_run(experiment, run_name="train")
    client.log_param(run.info.run_id, "depth", "6")
    client.log_metric(run.info.run_id, "auc", 0.91)
    client.set_terminated(run.info.run_id)
    client.create_registered_model("churn")
    for _ in range(2):
        client.create_model_version("churn", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("churn", "champion", "1")
    return client, run.info.run_id


def _ingested_fields(props):
    return {"hyperParams": props["hyperParams"], "trainingMetrics": props["trainingMetrics"],
            "groups": props["groups"], "trainingJobs": props["trainingJobs"], "name": props["name"]}


@pytest.mark.server
def test_sdk_links_and_full_crawls_keep_each_other(tmp_path):
    with mlflow_server(tmp_path / "mlflow") as url, CatalogServer() as server:
        mlflow_client, run_id = _seed(url)
        run = urns.run_urn(run_id)
        _ingest(url, server, tmp_path, "first")
        store = server.store
        ingested = _ingested_fields(store[(V1, "mlModelProperties")])
        assert ingested["hyperParams"] == [{"name": "depth", "value": "6"}]
        assert store[(V1, "mlModelProperties")]["deployments"] == [CHAMPION]
        assert store[(run, "dataProcessInstanceOutput")]["outputs"] == [V1, V2]

        with _sdk(server, tmp_path) as sdk:  # SDK links
            sdk.create_deployment("churn-shadow", platform="kserve")
            sdk.add_deployment_to_model(sdk.model_version_urn("churn", 1), SHADOW)
            sdk.add_output_datasets_to_run(sdk.run_urn(run_id), [SCORES])
        assert store[(V1, "mlModelProperties")]["deployments"] == [CHAMPION, SHADOW]
        assert _ingested_fields(store[(V1, "mlModelProperties")]) == ingested

        # champion moves to version 2: the next full crawl moves the link it owns, keeps the SDK's
        mlflow_client.set_registered_model_alias("churn", "champion", "2")
        _ingest(url, server, tmp_path, "second")
        assert store[(V1, "mlModelProperties")]["deployments"] == [SHADOW]
        assert store[(V2, "mlModelProperties")]["deployments"] == [CHAMPION]
        assert _ingested_fields(store[(V1, "mlModelProperties")]) == ingested
        assert store[(run, "dataProcessInstanceOutput")] == {
            "outputs": [V1, V2, SCORES],
            "outputEdges": [{"destinationUrn": V1}, {"destinationUrn": V2}, {"destinationUrn": SCORES}]}

        with _sdk(server, tmp_path) as sdk:  # SDK links again
            sdk.create_deployment("churn-canary-eu", platform="sagemaker")  # a rule's platform, a name no rule gives
            sdk.add_deployment_to_model(V1, CANARY)
            sdk.set_deployment_status(SHADOW, DeploymentStatus.IN_SERVICE)
            sdk.add_output_datasets_to_run(run, [REPORT])
        _ingest(url, server, tmp_path, "third")  # and one more crawl: nothing lost either way

        v1 = store[(V1, "mlModelProperties")]
        assert v1["deployments"] == [SHADOW, CANARY]
        assert _ingested_fields(v1) == ingested
        assert run_id in v1["customProperties"].values()
        assert store[(V2, "mlModelProperties")]["deployments"] == [CHAMPION]
        assert _ingested_fields(store[(V2, "mlModelProperties")])["groups"] == [GROUP]
        outputs = store[(run, "dataProcessInstanceOutput")]
        assert outputs["outputs"] == [V1, V2, SCORES, REPORT]
        assert [e["destinationUrn"] for e in outputs["outputEdges"]] == [V1, V2, SCORES, REPORT]
        assert store[(SHADOW, "mlModelDeploymentProperties")]["status"] == "IN_SERVICE"
        assert store[(run, "mlTrainingRunProperties")]["hyperParams"] == [{"name": "depth", "value": "6"}]
        assert server.problems == []  # every proposal valid for DataHub
        # the crawl read the shared aspects before writing them
        reads = [r["path"] for r in server.requests if r["method"] == "GET" and "dataProcessInstanceOutput" in r["path"]]
        assert reads


@pytest.mark.server
def test_a_crawl_file_sent_to_gms_composes_too(tmp_path):
    """Ingestion through the file sink, delivered with `mlflow-catalog send`: the same merge.
    Ingestion owns a run's model outputs: a deleted version goes, the SDK's dataset stays."""
    with mlflow_server(tmp_path / "mlflow") as url, CatalogServer() as server:
        mlflow_client, run_id = _seed(url)
        run = urns.run_urn(run_id)

        def crawl_and_send(name):
            out = tmp_path / f"{name}.json"
            recipe = parse_recipe({
                "source": {"type": "mlflow", "config": {"tracking_uri": url, "deployments": RULES}},
                "sink": {"type": "file", "config": {"filename": str(out)}}})
            assert run_ingest(recipe).ok
            validate_file(out)  # the file itself is as before: whole aspects
            sending = parse_recipe({**recipe.model_dump(mode="json", exclude_none=True), "sink": {
                "type": "datahub-rest", "config": {"server": server.url, "dead_letter_file": str(tmp_path / "d.json")}}})
            assert run_send(sending, str(out)).ok

        crawl_and_send("first")
        with _sdk(server, tmp_path) as sdk:
            sdk.add_output_datasets_to_run(run, [SCORES])
            sdk.add_deployment_to_model(V2, SHADOW)
        mlflow_client.delete_model_version("churn", "1")
        crawl_and_send("second")
        assert server.store[(run, "dataProcessInstanceOutput")]["outputs"] == [V2, SCORES]
        assert server.store[(V2, "mlModelProperties")]["deployments"] == [SHADOW]
        assert server.store[(V2, "mlModelProperties")]["hyperParams"] == [{"name": "depth", "value": "6"}]
        assert server.problems == []


def test_file_sink_refuses_a_link_that_would_replace_an_ingested_aspect(tmp_path):
    out = tmp_path / "links.json"
    with pytest.raises(SinkError) as refused:
        with CatalogClient.from_sink_config({"type": "file", "config": {"filename": str(out)}}) as sdk:
            endpoint = sdk.create_deployment("churn-shadow", platform="kserve")
            sdk.add_deployment_to_model(sdk.model_version_urn("churn", 1), endpoint)
    message = str(refused.value)
    assert message.startswith(f"mlModelProperties of {V1}: the file sink cannot read what the catalog holds")
    assert "datahub-rest" in message and "create the entity with this client first" in message
    assert not out.exists()  # nothing half-done: not even the deployment

    with CatalogClient.from_sink_config({"type": "file", "config": {"filename": str(out)}}) as sdk:
        with pytest.raises(SinkError, match=f"dataProcessInstanceOutput of {urns.run_urn('r1')}"):
            sdk.add_output_datasets_to_run(sdk.run_urn("r1"), [SCORES])
        run = sdk.create_training_run("r1")  # created here: the client holds the whole aspect
        sdk.add_output_datasets_to_run(run, [SCORES])
    written = {(r["entityUrn"], r["aspectName"]): r["aspect"]["json"] for r in validate_file(out)}
    assert written[(run, "dataProcessInstanceOutput")] == {"outputs": [SCORES], "outputEdges": [{"destinationUrn": SCORES}]}


def test_a_refused_read_dead_letters_the_shared_aspect_instead_of_writing_it_blind(tmp_path):
    from connector.http import HttpSettings, RetryPolicy
    from connector.mapping.common import Mcp
    from connector.mapping.links import ForeignLinks
    from connector.sinks.gms_client import GmsSettings
    from connector.sinks.rest import RestSink

    run = urns.run_urn("r1")
    with CatalogServer() as server:
        server.store[(V1, "mlModelProperties")] = {"name": "churn_1", "deployments": [SHADOW]}
        server.read_status = 400
        sink = RestSink(GmsSettings(server.url, http=HttpSettings(retry=RetryPolicy(max_retries=0))),
                        dead_letter_file=str(tmp_path / "dead.json"))
        sink.foreign_links = ForeignLinks()
        meta = {"lastObserved": 1, "runId": "r"}
        sink.write(Mcp(V1, "mlModelProperties", {"name": "churn_1", "groups": [GROUP]}), meta)
        sink.write(Mcp(V1, "status", {"removed": False}), meta)
        sink.write(Mcp(run, "dataProcessInstanceOutput", {"outputs": [V1], "outputEdges": [{"destinationUrn": V1}]}),
                   meta)
        result = sink.commit()
        assert (result.delivered, result.failed) == (1, 2)
        assert server.store[(V1, "mlModelProperties")] == {"name": "churn_1", "deployments": [SHADOW]}  # untouched
        assert server.store[(V1, "status")] == {"removed": False}
    dead = validate_file(tmp_path / "dead.json")
    assert sorted(r["aspectName"] for r in dead) == ["dataProcessInstanceOutput", "mlModelProperties"]
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "dead.json.reasons.jsonl").read_text().splitlines()]
    assert len(reasons) == 2
    assert all(r.startswith("not sent: reading the current ") and "HTTP 400: read refused" in r for r in reasons)


def test_with_a_platform_instance_ingestion_owns_its_instance_qualified_deployments():
    from connector.mapping.deployments import DeploymentRule
    from connector.mapping.links import ForeignLinks
    from connector.mapping.urns import deployment_urn

    rule = DeploymentRule(alias="champion", tag_key=None, tag_value=None, platform="sagemaker",
                          name_template="serving-{alias}", env=None, status="IN_SERVICE", description=None)
    east = ForeignLinks((rule,), "PROD", "east")
    ours = deployment_urn("sagemaker", "serving-champion", "PROD", "east")
    assert ours == "urn:li:mlModelDeployment:(urn:li:dataPlatform:sagemaker,east.serving-champion,PROD)"
    assert east.owns("deployments", ours)  # a moved alias's old deployment is removed, not kept forever
    assert not east.owns("deployments", deployment_urn("sagemaker", "serving-champion", "PROD", "west"))
    assert not east.owns("deployments", deployment_urn("sagemaker", "sdk-made", "PROD"))
    assert ForeignLinks((rule,), "PROD").owns("deployments", deployment_urn("sagemaker", "serving-champion", "PROD"))
