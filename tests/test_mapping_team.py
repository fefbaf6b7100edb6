"""Pure mapping (no server): what the crawler hands over beyond the basics — a run's LoggedModels,
an unregistered LoggedModel's run — and the rules issue 13 set, record by record."""
from datahub.ingestion.source.common.data_platforms import KNOWN_VALID_PLATFORM_NAMES

from connector.mapping.common import MappingContext
from connector.mapping.memory import MappingMemory
from connector.mapping.platforms import DATAHUB_PLATFORMS
from connector.mapping.catalog_entities import entities_of
from connector.source.artifacts import signature_inputs
from connector.source.mlflow_objects import (
    DatasetInput, Experiment, LoggedDataset, LoggedMetric, LoggedModel, ModelVersion, Run,
)
from connector.source.crawl_records import LoggedModelRecord, RunRecord
from tests.catalog_validation import validate_proposal
from tests.expectations import dataset_urn, run_urn

CTX = MappingContext()
EXP = Experiment(experiment_id="1", name="churn")
TRAIN = LoggedDataset(name="train", digest="d1", source_type="s3", source='{"uri": "s3://acme/churn/train.parquet"}',
                      schema='{"mlflow_colspec": [{"name": "tenure", "type": "double"}]}')
TEST = LoggedDataset(name="test", digest="d2", source_type="s3", source='{"uri": "s3://acme/churn/test.parquet"}')
RUN = Run(run_id="r1", experiment_id="1", status="FINISHED", user_id="ana", metrics={"accuracy": 0.9},
          params={"C": "1"}, dataset_inputs=[DatasetInput(TRAIN, {"mlflow.data.context": "training"}),
                                             DatasetInput(TEST, {"mlflow.data.context": "evaluation"})])
UNREGISTERED = LoggedModel(model_id="m-aaa", experiment_id="1", name="model", source_run_id="r1",
                           metrics=[LoggedMetric("accuracy", 0.9, "test", "d2", "r1")],
                           signature_inputs=[{"name": "tenure", "type": "double"}])
REGISTERED = LoggedModel(model_id="m-bbb", experiment_id="1", name="model", source_run_id="r1")


def aspects(record):
    out = {}
    for entity in entities_of(CTX, record, MappingMemory()):
        for p in entity.proposals:
            validate_proposal({"entityType": p.entity_type, "entityUrn": p.entity_urn, "aspectName": p.aspect_name,
                               "changeType": "UPSERT", "systemMetadata": {"lastObserved": 1, "runId": "t"}}, p.aspect)
            out.setdefault(p.entity_urn, {})[p.aspect_name] = p.aspect
    return out


def test_a_runs_unregistered_logged_models_are_its_outputs():
    version = ModelVersion(name="churn", version="1", run_id="r1", source="models:/m-bbb")
    a = aspects(RunRecord(RUN, EXP, [version], logged_models=[UNREGISTERED, REGISTERED]))
    assert a[run_urn("r1")]["dataProcessInstanceOutput"]["outputs"] == [
        "urn:li:mlModel:(urn:li:dataPlatform:mlflow,churn_1,PROD)",  # m-bbb is that version: listed once
        "urn:li:mlModel:(urn:li:dataPlatform:mlflow,model_m-aaa,PROD)"]


def test_an_unregistered_logged_model_with_its_run_has_training_and_evaluation_data():
    a = aspects(LoggedModelRecord(UNREGISTERED, EXP, run=RUN))
    model = a["urn:li:mlModel:(urn:li:dataPlatform:mlflow,model_m-aaa,PROD)"]
    train = dataset_urn("train", "s3", "s3://acme/churn/train.parquet")
    test = dataset_urn("test", "s3", "s3://acme/churn/test.parquet")
    assert model["mlModelTrainingData"] == {"trainingData": [{"dataset": train}]}
    assert model["mlModelEvaluationData"] == {"evaluationData": [{"dataset": test}]}
    assert model["mlModelProperties"]["trainingMetrics"] == [  # the run's accuracy is this one: once
        {"name": "accuracy", "value": "0.9", "description": "on dataset test (d2)"}]
    assert model["mlModelProperties"]["mlFeatures"] == ["urn:li:mlFeature:(model_m-aaa,tenure)"]
    assert a["urn:li:mlFeature:(model_m-aaa,tenure)"]["mlFeatureProperties"]["sources"] == [train]


def test_signatures_keep_their_good_columns():
    mlmodel = {"signature": {"inputs": '[{"name": "a", "type": "double"}, {"type": "double"}, "b", '
                                       '{"name": "", "type": "long"}, {"name": "c", "type": "long"}]'}}
    assert [c["name"] for c in signature_inputs(mlmodel)] == ["a", "c"]
    assert signature_inputs({"signature": {"inputs": '[{"type": "tensor"}]'}}) is None


def test_retrains_keep_one_dataset_and_a_code_built_frame_is_its_content():
    retrained = LoggedDataset(name="train", digest="d9", source_type="s3", source=TRAIN.source)
    a1, a2 = aspects(RunRecord(RUN, EXP)), aspects(RunRecord(Run(run_id="r2", experiment_id="1",
                                                                 dataset_inputs=[DatasetInput(retrained)]), EXP))
    train = dataset_urn("train", "s3", "s3://acme/churn/train.parquet")
    assert train in a1 and train in a2
    in_code = [LoggedDataset(name="dataset", digest=d, source_type="code", source='{"tags": {}}') for d in ("x", "y")]
    urns_ = {u for d in in_code for u in aspects(RunRecord(Run(run_id="r3", experiment_id="1",
                                                              dataset_inputs=[DatasetInput(d)]), EXP))
             if u.startswith("urn:li:dataset:")}
    assert len(urns_) == 2


def test_every_platform_datahubs_mlflow_source_knows_is_a_source_type_we_map():
    assert set(KNOWN_VALID_PLATFORM_NAMES) <= DATAHUB_PLATFORMS


def test_a_record_that_fails_to_map_leaves_its_shared_entities_to_the_next():
    from connector.mapping.memory import MappingMemory

    memory = MappingMemory()
    assert memory.first_emission("urn:li:dataset:a")
    memory.forget_pending()  # the record failed after meeting the dataset: it was never sent
    assert memory.first_emission("urn:li:dataset:a")
    memory.settle()  # this record mapped: the dataset went with it
    assert not memory.first_emission("urn:li:dataset:a")
