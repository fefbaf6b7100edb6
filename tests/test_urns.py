import hashlib

import pytest
from datahub.metadata.urns import (
    ContainerUrn, CorpUserUrn, DataProcessInstanceUrn, DatasetUrn, MlFeatureUrn, MlModelDeploymentUrn,
    MlModelGroupUrn, MlModelUrn, TagUrn, Urn,
)

from connector.mapping import urns
from connector.mapping.common import MappingContext
from connector.mapping.features import map_features


def test_guids_match_spec_examples():
    assert urns.guid({"platform": "urn:li:dataPlatform:mlflow", "id": "churn"}) == "2c70d8cfd3efcf2280436e1170397400"
    assert urns.guid({"orchestrator": "mlflow", "id": "abc123"}) == "820d94dd3710b6ab80814d7608bfac8c"
    assert urns.guid({"platform": "mlflow", "name": "churn"}) == "3cf7179b6360b7a67236aecb7e48116f"


def test_entity_urns_follow_spec():
    assert urns.experiment_urn("churn") == "urn:li:container:2c70d8cfd3efcf2280436e1170397400"
    assert urns.run_urn("abc123") == "urn:li:dataProcessInstance:820d94dd3710b6ab80814d7608bfac8c"
    assert urns.version_set_urn("churn") == "urn:li:versionSet:(3cf7179b6360b7a67236aecb7e48116f,mlModel)"
    assert urns.model_group_urn("churn", "PROD") == "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,churn,PROD)"
    assert urns.model_urn("churn", "3", "-", "DEV") == "urn:li:mlModel:(urn:li:dataPlatform:mlflow,churn-3,DEV)"
    with_instance = urns.experiment_urn("churn", "eu")
    assert with_instance == "urn:li:container:" + urns.guid(
        {"platform": "urn:li:dataPlatform:mlflow", "id": "churn", "instance": "eu"})
    assert with_instance != urns.experiment_urn("churn")


def test_reserved_characters_are_encoded_and_urns_parse():
    assert urns.encode("fraud,v2 (beta)") == "fraud%2Cv2 %28beta%29"
    assert urns.encode("plain_name-1.0") == "plain_name-1.0"
    group = urns.model_group_urn("fraud,v2 (beta)", "PROD")
    assert group == "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,fraud%2Cv2 %28beta%29,PROD)"
    for urn in (group, urns.model_urn("a(b),c", "1", "_", "PROD"),
                urns.dataset_urn("s3", "bucket/x,y", "PROD"), urns.deployment_urn("sagemaker", "ep(1)", "PROD"),
                urns.feature_urn("ns,1", "col(a)")):
        assert str(Urn.from_string(urn)) == urn


# -- hostile names: every URN parses with acryl-datahub's typed classes, fits GMS, never collides --


LONG_COLUMN = "c" * 1024
HOSTILE = ["pct,name", "pct%2Cname", "pct%252Cname", "a,b (c)", "(bad", "bad)", "x\u241fy", "naïve-模型-😀",
           " padded ", "tab\t", "100%", "%", "%2C", LONG_COLUMN, LONG_COLUMN + "x", "é" * 600, "plain"]


def _builders(name: str):
    """(typed class, URN) for every builder a name reaches."""
    return [
        (MlModelGroupUrn, urns.model_group_urn(name, "PROD")),
        (MlModelUrn, urns.model_urn(name, "3", "_", "PROD")),
        (MlModelUrn, urns.plain_model_urn(name, "DEV")),
        (DatasetUrn, urns.dataset_urn("s3", name, "PROD")),
        (MlFeatureUrn, urns.feature_urn(name, name)),
        (MlFeatureUrn, urns.feature_urn("model", name)),
        (MlModelDeploymentUrn, urns.deployment_urn("sagemaker", name, "PROD")),
        (CorpUserUrn, urns.corpuser_urn(name)),
        (TagUrn, urns.tag_urn(name)),
        (ContainerUrn, urns.experiment_urn(name)),
        (DataProcessInstanceUrn, urns.run_urn(name)),
    ]


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: repr(n[:20]) + f"/{len(n)}")
def test_hostile_names_give_urns_datahub_parses_and_gms_accepts(name):
    for typed, urn in _builders(name):
        parsed = typed.from_string(urn)  # the typed classes refuse reserved characters in ids
        assert str(parsed) == urn
        assert str(Urn.from_string(urn)) == urn
        assert urns.url_encoded_length(urn) <= urns.MAX_URN_BYTES, urn
        assert urn == urn.strip()  # GMS refuses leading/trailing whitespace


def test_distinct_names_never_share_a_urn():
    for index in range(len(_builders("x"))):
        built = [_builders(name)[index][1] for name in HOSTILE]
        assert len(set(built)) == len(HOSTILE), built


def test_percent_is_encoded_and_plain_names_are_unchanged():
    assert urns.model_group_urn("pct,name", "PROD") == "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,pct%2Cname,PROD)"
    assert urns.model_group_urn("pct%2Cname", "PROD") == \
        "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,pct%252Cname,PROD)"
    assert urns.corpuser_urn("a,b (c)") == "urn:li:corpuser:a%2Cb %28c%29"
    assert urns.corpuser_urn("(bad") == "urn:li:corpuser:%28bad"
    assert urns.corpuser_urn(" bob ") == "urn:li:corpuser:%20bob%20"
    assert urns.corpuser_urn("urn:li:corpuser:alice") == "urn:li:corpuser:alice"  # the SDK passes URNs
    assert urns.model_urn("churn-model.v2", "7", "_", "PROD") == \
        "urn:li:mlModel:(urn:li:dataPlatform:mlflow,churn-model.v2_7,PROD)"


def test_a_urn_over_the_limit_is_shortened_stably_with_a_digest():
    urn = urns.feature_urn("churn", LONG_COLUMN)
    assert urns.url_encoded_length(f"urn:li:mlFeature:(churn,{LONG_COLUMN})") > urns.MAX_URN_BYTES
    assert urns.is_shortened(urn) and urn == urns.feature_urn("churn", LONG_COLUMN)  # same every run
    digest = hashlib.sha256(LONG_COLUMN.encode()).hexdigest()[:32]
    assert urn.endswith(f"cc{urns.SHORTENED_MARK}{digest})") and urn.startswith("urn:li:mlFeature:(churn,ccc")
    assert urns.url_encoded_length(urn) in (urns.MAX_URN_BYTES - 2, urns.MAX_URN_BYTES - 1, urns.MAX_URN_BYTES)
    assert not urns.is_shortened(urns.feature_urn("churn", "c" * 100))


def test_a_shortened_feature_keeps_its_full_name_in_its_properties():
    (urn, proposals), (short_urn, short_proposals) = map_features(
        MappingContext(), "churn", [{"name": LONG_COLUMN, "type": "double"}, {"name": "age", "type": "long"}], [])
    props = proposals[0].aspect["customProperties"]
    assert urns.is_shortened(urn) and props["full_name"] == LONG_COLUMN and props["full_namespace"] == "churn"
    assert "full_name" not in short_proposals[0].aspect["customProperties"]
    from datahub.metadata.schema_classes import MLFeaturePropertiesClass
    assert MLFeaturePropertiesClass.from_obj(proposals[0].aspect).validate()


def test_a_shortened_deployment_keeps_its_full_name_in_its_properties():
    from connector.mapping.deployments import DeploymentRule, deployments_for_version
    from connector.source.mlflow_objects import ModelVersion

    long_model = "m" * 600
    version = ModelVersion(name=long_model, version="2", aliases=["champion"])
    rule = DeploymentRule(platform="sagemaker", name_template="{model}-{alias}", alias="champion")
    (deployment,) = deployments_for_version((rule,), version, "PROD")
    assert urns.is_shortened(deployment.urn) and urns.url_encoded_length(deployment.urn) <= urns.MAX_URN_BYTES
    assert deployment.properties["customProperties"]["full_name"] == f"{long_model}-champion"
    assert str(MlModelDeploymentUrn.from_string(deployment.urn)) == deployment.urn
