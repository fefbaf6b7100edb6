"""Registry aliases / version tags -> mlModelDeployment entities: pure rule mapping, recipe
validation, and a real MLflow server where a moved alias moves the deployment link."""
import pytest

from connector.mapping.common import MappingContext
from connector.mapping.deployments import DeploymentRule, deployments_for_version, map_deployment
from connector.mapping.registry import map_model_version
from connector.pipeline import run_ingest
from connector.config.settings import mapping_context
from connector.config.recipe import RecipeError, parse_recipe
from connector.source.mlflow_objects import ModelVersion, RegisteredModel
from tests.catalog_validation import validate_file
from tests.mlflow_server import mlflow_server
from tests.test_mapping import as_dict

DEPLOYMENT = "urn:li:mlModelDeployment:(urn:li:dataPlatform:sagemaker,churn-champion,PROD)"
CHAMPION = {"alias": "champion", "platform": "sagemaker", "name_template": "{model}-{alias}"}


def recipe(tracking_uri, out, rules):
    return parse_recipe({
        "source": {"type": "mlflow", "config": {"tracking_uri": tracking_uri, "deployments": rules}},
        "sink": {"type": "file", "config": {"filename": str(out)}}})


def test_rules_match_alias_and_tag():
    rules = (DeploymentRule(platform="sagemaker", name_template="{model}-{alias}", alias="champion"),
             DeploymentRule(platform="kserve", name_template="{model}-v{version}-{tag_value}",
                            tag_key="serving", env="DEV", status="CREATING", description="canary"),
             DeploymentRule(platform="kserve", name_template="x", tag_key="serving", tag_value="blue"))
    version = ModelVersion(name="churn", version="4", aliases=["champion"], tags={"serving": "green"})
    found = deployments_for_version(rules, version, "PROD")
    assert [d.urn for d in found] == [
        DEPLOYMENT, "urn:li:mlModelDeployment:(urn:li:dataPlatform:kserve,churn-v4-green,DEV)"]
    assert found[1].properties == {
        "customProperties": {"model": "churn", "model_version": "4", "tag": "serving=green"},
        "description": "canary", "version": {"versionTag": "4"}, "status": "CREATING"}
    assert deployments_for_version(rules, ModelVersion(name="churn", version="5"), "PROD") == []

    ctx = MappingContext(deployment_rules=rules)
    a = as_dict(map_model_version(ctx, version, RegisteredModel(name="churn"), None))
    assert a["mlModelProperties"][0]["deployments"] == [d.urn for d in found]
    entity = as_dict(map_deployment(found[0].urn, found[0].platform, found[0].properties))
    assert entity["mlModelDeploymentProperties"][0]["status"] == "IN_SERVICE"
    assert entity["dataPlatformInstance"] == [{"platform": "urn:li:dataPlatform:sagemaker"}]
    assert entity["status"] == [{"removed": False}]


def test_no_rules_no_deployments_field():
    a = as_dict(map_model_version(MappingContext(), ModelVersion(name="m", version="1", aliases=["champion"]),
                                  RegisteredModel(name="m"), None))
    assert "deployments" not in a["mlModelProperties"][0]


@pytest.mark.parametrize("rule, message", [
    ({"platform": "sagemaker", "name_template": "{model}"}, "needs an alias, a tag, or both"),
    ({**CHAMPION, "name_template": "{model}-{stage}"}, "bad template"),
    ({**CHAMPION, "status": "LIVE"}, "unknown status"),
    ({**CHAMPION, "env": "MARS"}, "unknown env"),
])
def test_bad_rules_are_refused(rule, message, tmp_path):
    with pytest.raises(RecipeError) as exc:
        recipe("http://mlflow:5000", tmp_path / "o.json", [rule])
    assert "source.config.deployments[0]" in str(exc.value) and message in str(exc.value)


def test_rule_defaults_from_the_source(tmp_path):
    parsed = recipe("http://x", tmp_path / "o.json", [{**CHAMPION, "tag": {"key": "serving"}}])
    rule, = mapping_context(parsed.source.config).deployment_rules
    assert (rule.status, rule.env, rule.alias, rule.tag_key, rule.tag_value) == (
        "IN_SERVICE", None, "champion", "serving", None)


def _by_urn(records):
    out = {}
    for r in records:
        out.setdefault(r["entityUrn"], {})[r["aspectName"]] = r["aspect"]["json"]
    return out


@pytest.mark.server
def test_moved_alias_moves_the_deployment(tmp_path):
    from mlflow import MlflowClient

    rules = [{**CHAMPION, "name_template": "{model}-champion", "description": "live endpoint"}]
    with mlflow_server(tmp_path / "mlflow") as url:
        client = MlflowClient(url)
        client.create_registered_model("churn")
        client.create_model_version("churn", "s3://models/churn/1")
        client.create_model_version("churn", "s3://models/churn/2")
        client.set_registered_model_alias("churn", "champion", "1")

        first = tmp_path / "first.json"
        assert run_ingest(recipe(url, first, rules)).ok
        client.set_registered_model_alias("churn", "champion", "2")
        second = tmp_path / "second.json"
        assert run_ingest(recipe(url, second, rules)).ok

    v1 = "urn:li:mlModel:(urn:li:dataPlatform:mlflow,churn_1,PROD)"
    v2 = "urn:li:mlModel:(urn:li:dataPlatform:mlflow,churn_2,PROD)"
    before = _by_urn(validate_file(first))
    assert before[v1]["mlModelProperties"]["deployments"] == [DEPLOYMENT]
    assert before[v2]["mlModelProperties"]["deployments"] == []
    assert before[DEPLOYMENT]["mlModelDeploymentProperties"]["version"] == {"versionTag": "1"}

    after_records = validate_file(second)
    after = _by_urn(after_records)
    assert after[v1]["mlModelProperties"]["deployments"] == []
    assert after[v2]["mlModelProperties"]["deployments"] == [DEPLOYMENT]
    deployment = after[DEPLOYMENT]
    assert deployment["mlModelDeploymentProperties"] == {
        "customProperties": {"alias": "champion", "model": "churn", "model_version": "2"},
        "description": "live endpoint", "version": {"versionTag": "2"}, "status": "IN_SERVICE"}
    assert deployment["status"] == {"removed": False}
    # the deployment entity is emitted once per run
    assert sum(r["entityUrn"] == DEPLOYMENT for r in after_records) == 3
