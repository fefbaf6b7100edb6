from datahub.metadata.urns import Urn

from connector.mapping import urns


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
