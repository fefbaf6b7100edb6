"""`platform_instance` is part of every MLflow object's identity, the way DataHub's own builders
qualify names (`INSTANCE.NAME`) and GUIDs (`"instance"` in the dict); without it nothing changes."""
import json
import re

import pytest
from datahub.emitter import mce_builder
from datahub.metadata.urns import (
    DataProcessInstanceUrn, DatasetUrn, MlFeatureUrn, MlModelDeploymentUrn, MlModelGroupUrn, MlModelUrn, Urn,
)

from connector.mapping import urns
from connector.mapping.common import MappingContext
from connector.mapping.deployments import DeploymentRule, deployments_for_version
from connector.mapping.features import map_features
from connector.source.mlflow_objects import ModelVersion
from tests.golden_scenarios import SCENARIOS, Step, run_step

INSTANCE = "east"


def test_name_based_urns_are_datahubs_instance_qualified_names():
    assert urns.dataset_urn("mlflow", "train,v2 (a)", "PROD", INSTANCE) == \
        mce_builder.make_dataset_urn_with_platform_instance("mlflow", "train,v2 (a)", INSTANCE, "PROD")
    assert urns.model_group_urn("churn", "PROD", instance=INSTANCE) == \
        mce_builder.make_ml_model_group_urn("mlflow", "east.churn", "PROD") == \
        "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,east.churn,PROD)"
    assert urns.model_urn("churn", "3", "_", "PROD", instance=INSTANCE) == \
        mce_builder.make_ml_model_urn("mlflow", "east.churn_3", "PROD")
    assert urns.plain_model_urn("churn_m-1", "DEV", instance=INSTANCE) == \
        "urn:li:mlModel:(urn:li:dataPlatform:mlflow,east.churn_m-1,DEV)"
    assert urns.deployment_urn("sagemaker", "churn-prod", "PROD", INSTANCE) == \
        mce_builder.make_ml_model_deployment_urn("sagemaker", "east.churn-prod", "PROD")
    assert urns.feature_urn("churn", "age", INSTANCE) == mce_builder.make_ml_feature_urn("east.churn", "age")


def test_guid_based_urns_carry_the_instance_in_their_dict():
    assert urns.run_urn("abc123", instance=INSTANCE) == "urn:li:dataProcessInstance:" + urns.guid(
        {"orchestrator": "mlflow", "id": "abc123", "instance": INSTANCE})
    assert urns.version_set_urn("churn", instance=INSTANCE) == "urn:li:versionSet:(" + urns.guid(
        {"platform": "mlflow", "name": "churn", "instance": INSTANCE}) + ",mlModel)"
    assert urns.experiment_urn("churn", INSTANCE) == "urn:li:container:" + urns.guid(
        {"platform": "urn:li:dataPlatform:mlflow", "id": "churn", "instance": INSTANCE})


def test_without_an_instance_every_urn_is_unchanged():
    assert urns.run_urn("abc123", instance=None) == "urn:li:dataProcessInstance:820d94dd3710b6ab80814d7608bfac8c"
    assert urns.version_set_urn("churn", instance="") == "urn:li:versionSet:(3cf7179b6360b7a67236aecb7e48116f,mlModel)"
    assert urns.model_group_urn("churn", "PROD", instance=None) == \
        "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,churn,PROD)"
    assert urns.feature_urn("churn", "age", None) == "urn:li:mlFeature:(churn,age)"


def test_two_instances_never_share_a_urn_and_every_urn_parses_and_fits():
    names = ["model-002", "a,b (c)", "x" * 600, "naïve-模型"]
    for name in names:
        built = {instance: [
            (MlModelGroupUrn, urns.model_group_urn(name, "PROD", instance=instance)),
            (MlModelUrn, urns.model_urn(name, "1", "_", "PROD", instance=instance)),
            (DatasetUrn, urns.dataset_urn("mlflow", name, "PROD", instance)),
            (MlModelDeploymentUrn, urns.deployment_urn("sagemaker", name, "PROD", instance)),
            (MlFeatureUrn, urns.feature_urn(name, name, instance)),
            (DataProcessInstanceUrn, urns.run_urn(name, instance=instance)),
        ] for instance in (None, "east", "west,eu")}
        for typed in built.values():
            for cls, urn in typed:
                assert str(cls.from_string(urn)) == urn and urns.url_encoded_length(urn) <= urns.MAX_URN_BYTES
        flat = [urn for typed in built.values() for _, urn in typed]
        assert len(set(flat)) == len(flat), name


def test_mapping_qualifies_features_and_rule_deployments():
    ctx = MappingContext(platform_instance=INSTANCE)
    (urn, proposals), = map_features(ctx, "churn", [{"name": "age", "type": "long"}], [])
    assert urn == "urn:li:mlFeature:(east.churn,age)"
    assert proposals[1].aspect["instance"] == "urn:li:dataPlatformInstance:(urn:li:dataPlatform:mlflow,east)"
    rule = DeploymentRule(platform="sagemaker", name_template="{model}-{alias}", alias="prod")
    version = ModelVersion(name="churn", version="2", aliases=["prod"])
    (deployment,) = deployments_for_version((rule,), version, "PROD", INSTANCE)
    assert deployment.urn == "urn:li:mlModelDeployment:(urn:li:dataPlatform:sagemaker,east.churn-prod,PROD)"
    (plain,) = deployments_for_version((rule,), version, "PROD")
    assert plain.urn == "urn:li:mlModelDeployment:(urn:li:dataPlatform:sagemaker,churn-prod,PROD)"


# -- a whole crawl: the golden output, each MLflow object's URN qualified, and nothing else -------

_NAMED = re.compile(r"urn:li:(mlModel|mlModelGroup|mlModelDeployment|dataset):\((urn:li:dataPlatform:mlflow),([^,]+),")
_FEATURE = re.compile(r"urn:li:mlFeature:\(([^,]+),")


def _expected_with_instance(golden: list) -> list:
    """The golden proposals as they must look with platform_instance INSTANCE."""
    guids = {}
    for p in golden:
        aspect = p["aspect"]["json"]
        if p["aspectName"] == "mlTrainingRunProperties":
            guids[urns.run_urn(aspect["id"])] = urns.run_urn(aspect["id"], instance=INSTANCE)
        if p["aspectName"] == "containerProperties":
            guids[urns.experiment_urn(aspect["name"])] = urns.experiment_urn(aspect["name"], INSTANCE)
        if p["aspectName"] == "mlModelGroupProperties":
            guids[urns.version_set_urn(aspect["name"])] = urns.version_set_urn(aspect["name"], instance=INSTANCE)
    text = json.dumps(golden)
    for old, new in guids.items():
        text = text.replace(old, new)
    text = _NAMED.sub(lambda m: f"urn:li:{m[1]}:({m[2]},{INSTANCE}.{m[3]},", text)
    text = _FEATURE.sub(lambda m: f"urn:li:mlFeature:({INSTANCE}.{m[1]},", text)
    expected = json.loads(text)
    for p in expected:
        aspect = p["aspect"]["json"]
        if p["aspectName"] == "dataPlatformInstance":
            aspect["instance"] = urns.platform_instance_urn(INSTANCE)
        elif p["aspectName"] == "containerProperties":
            aspect["customProperties"] = dict(sorted({**aspect["customProperties"], "instance": INSTANCE}.items()))
        elif p["aspectName"] == "browsePathsV2":
            aspect["path"] = [{"id": urns.platform_instance_urn(INSTANCE), "urn": urns.platform_instance_urn(INSTANCE)}]
    return expected


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.name in ("seeded", "mlflow3")], ids=lambda s: s.name)
def test_a_crawl_with_an_instance_qualifies_every_mlflow_object(scenario, tmp_path):
    from dataclasses import replace

    facts = json.loads(scenario.facts.read_text(encoding="utf-8"))
    golden = json.loads(scenario.golden(0).read_text(encoding="utf-8"))["proposals"]
    with_instance = replace(scenario, steps=(Step({**scenario.steps[0].source, "platform_instance": INSTANCE}),))
    report, output = run_step(with_instance, 0, facts["tracking_uri"], tmp_path, "none")
    assert report.ok, report.failures
    assert output == _expected_with_instance(golden)
    unqualified = {p["entityUrn"] for p in golden if not p["entityUrn"].startswith("urn:li:tag:")}
    assert unqualified and not unqualified & {p["entityUrn"] for p in output}
    for urn in {p["entityUrn"] for p in output}:
        assert str(Urn.from_string(urn)) == urn


def test_the_sdk_builds_the_sources_urns_with_its_platform_instance(tmp_path):
    from connector.sdk.client import CatalogClient

    sink = {"type": "file", "config": {"filename": str(tmp_path / "out.json")}}
    with CatalogClient.from_sink_config(sink, platform_instance=INSTANCE) as client:
        assert client.model_group_urn("churn") == urns.model_group_urn("churn", "PROD", instance=INSTANCE)
        assert client.model_version_urn("churn", 3) == "urn:li:mlModel:(urn:li:dataPlatform:mlflow,east.churn_3,PROD)"
        assert client.run_urn("abc123") == urns.run_urn("abc123", instance=INSTANCE)
        assert client.dataset_urn("mlflow", "train") == "urn:li:dataset:(urn:li:dataPlatform:mlflow,east.train,PROD)"
        assert client.dataset_urn("s3", "bucket/train") == "urn:li:dataset:(urn:li:dataPlatform:s3,bucket/train,PROD)"
        model = client.create_model("churn_m-1", 1)
        assert model == "urn:li:mlModel:(urn:li:dataPlatform:mlflow,east.churn_m-1,PROD)"
    written = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    version_set = next(r["aspect"]["json"]["versionSet"] for r in written if r["aspectName"] == "versionProperties")
    assert version_set == urns.version_set_urn("churn_m-1", instance=INSTANCE)
    with CatalogClient.from_sink_config(sink) as plain:
        assert plain.model_version_urn("churn", 3) == "urn:li:mlModel:(urn:li:dataPlatform:mlflow,churn_3,PROD)"
