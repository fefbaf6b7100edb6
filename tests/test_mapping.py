"""Mapping is pure: MLflow records in, proposals out. No server needed."""
from connector.mapping import urns
from connector.mapping.common import MappingContext, metric_value
from connector.mapping.datasets import map_dataset
from connector.mapping.experiments import map_experiment, map_run
from connector.mapping.registry import map_model_group, map_model_version
from connector.source.mlflow_objects import (
    DatasetInput, Experiment, LoggedDataset, ModelVersion, RegisteredModel, Run,
)
from tests.catalog_validation import validate_proposal

CTX = MappingContext(base_external_url="http://mlflow:5000/")
EXP = Experiment(experiment_id="7", name="exp", tags={"mlflow.note.content": "about"})


def as_dict(proposals):
    out = {}
    for p in proposals:
        record = {"entityType": p.entity_type, "entityUrn": p.entity_urn, "aspectName": p.aspect_name,
                  "changeType": "UPSERT", "systemMetadata": {"lastObserved": 1, "runId": "t"}}
        validate_proposal(record, p.aspect)
        out.setdefault(p.aspect_name, []).append(p.aspect)
    return out


def run(**kw):
    base = dict(run_id="r1", experiment_id="7", run_name="", user_id="alice", status="FINISHED",
                start_time=1000, end_time=4000, artifact_uri="s3://a/r1")
    base.update(kw)
    return Run(**base)


def test_finished_run_events_and_links():
    version = ModelVersion(name="m", version="2", run_id="r1")
    a = as_dict(map_run(CTX, run(params={"b": "2", "a": "1"}, metrics={"m": float("inf")}), EXP, [version]))
    started, complete = a["dataProcessInstanceRunEvent"]
    assert started == {"timestampMillis": 1000, "status": "STARTED", "attempt": 1}
    assert complete["result"] == {"type": "SUCCESS", "nativeResultType": "mlflow"}
    assert complete["durationMillis"] == 3000
    props = a["dataProcessInstanceProperties"][0]
    assert props["name"] == "r1"  # no run name: the id
    assert props["created"] == {"time": 1000, "actor": "urn:li:corpuser:alice"}
    assert props["externalUrl"] == "http://mlflow:5000/#/experiments/7/runs/r1"
    training = a["mlTrainingRunProperties"][0]
    assert [p["name"] for p in training["hyperParams"]] == ["a", "b"]  # sorted, deterministic
    assert training["trainingMetrics"] == [{"name": "m", "value": "Infinity"}]
    assert training["outputUrls"] == ["s3://a/r1"]
    assert a["dataProcessInstanceOutput"][0]["outputEdges"] == [
        {"destinationUrn": "urn:li:mlModel:(urn:li:dataPlatform:mlflow,m_2,PROD)"}]
    assert a["container"] == [{"container": urns.experiment_urn("exp")}]


def test_run_states():
    running = as_dict(map_run(CTX, run(status="RUNNING", end_time=None), EXP, []))
    assert [e["status"] for e in running["dataProcessInstanceRunEvent"]] == ["STARTED"]
    assert "dataProcessInstanceOutput" not in running and "dataProcessInstanceInput" not in running
    failed = as_dict(map_run(CTX, run(status="FAILED"), EXP, []))
    assert failed["dataProcessInstanceRunEvent"][1]["result"]["type"] == "FAILURE"
    killed = as_dict(map_run(CTX, run(status="KILLED"), EXP, []))
    assert killed["dataProcessInstanceRunEvent"][1]["result"]["type"] == "SKIPPED"
    deleted = as_dict(map_run(CTX, run(lifecycle_stage="deleted"), EXP, []))
    assert deleted["status"] == [{"removed": True}]


def test_metric_values():
    assert [metric_value(v) for v in (float("nan"), float("inf"), float("-inf"), 3.0, 0.125)] == [
        "NaN", "Infinity", "-Infinity", "3.0", "0.125"]


def test_experiment_container_with_platform_instance():
    ctx = MappingContext(platform_instance="eu-prod")
    a = as_dict(map_experiment(ctx, EXP))
    assert a["containerProperties"][0]["description"] == "about"
    assert "mlflow.note.content" not in a["containerProperties"][0]["customProperties"]
    instance = "urn:li:dataPlatformInstance:(urn:li:dataPlatform:mlflow,eu-prod)"
    assert a["dataPlatformInstance"] == [{"platform": "urn:li:dataPlatform:mlflow", "instance": instance}]
    assert a["browsePathsV2"] == [{"path": [{"id": instance, "urn": instance}]}]
    assert "externalUrl" not in a["containerProperties"][0]  # no http base, no link


def test_version_without_run_and_custom_separator():
    ctx = MappingContext(model_name_separator="-", env="DEV")
    model = RegisteredModel(name="m", aliases={"champion": "10"})
    version = ModelVersion(name="m", version="10", aliases=["champion"], current_stage="Archived")
    proposals = list(map_model_version(ctx, version, model, None))
    assert {p.entity_urn for p in proposals} == {"urn:li:mlModel:(urn:li:dataPlatform:mlflow,m-10,DEV)"}
    a = as_dict(proposals)
    assert a["versionProperties"][0]["sortId"] == "0000000010"
    assert a["globalTags"] == [{"tags": [{"tag": "urn:li:tag:mlflow_archived"}]}]
    props = a["mlModelProperties"][0]
    assert props["trainingJobs"] == [] and "hyperParams" not in props and "ownership" not in a
    assert props["groups"] == ["urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,m,DEV)"]


def test_group_latest_version_is_numeric_not_lexical():
    versions = [ModelVersion(name="m", version=str(v), run_id=f"r{v % 2}") for v in (2, 10, 9)]
    a = as_dict(map_model_group(CTX, RegisteredModel(name="m"), versions))
    props = a["mlModelGroupProperties"][0]
    assert props["version"] == {"versionTag": "10"}
    assert props["trainingJobs"] == [urns.run_urn("r0"), urns.run_urn("r1")]  # deduplicated


def test_dataset_with_unparseable_schema_and_platform_mapping():
    ds = LoggedDataset(name="t", source_type="delta_table", source='{"delta_table_name": "cat.sch.tbl"}',
                       schema='{"mlflow_tensorspec": {}}', digest="abc")
    ctx = MappingContext(dataset_platform_mapping={"delta_table": "databricks"})
    a = as_dict(map_dataset(ctx, DatasetInput(dataset=ds)))
    assert "schemaMetadata" not in a
    assert a["datasetProperties"][0]["customProperties"]["schema"] == '{"mlflow_tensorspec": {}}'
    assert a["upstreamLineage"][0]["upstreams"][0]["dataset"] == \
        "urn:li:dataset:(urn:li:dataPlatform:databricks,cat.sch.tbl,PROD)"
    local = as_dict(map_dataset(CTX, DatasetInput(dataset=LoggedDataset(name="l", source_type="local"))))
    assert "upstreamLineage" not in local


def test_file_sink_removes_only_old_temp_files_of_killed_runs(tmp_path):
    import os
    import time

    from connector.sinks.file import FileSink, read_proposals

    old, fresh = tmp_path / ".out.json.abc.tmp", tmp_path / ".out.json.def.tmp"
    old.write_text("[")
    fresh.write_text("[")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    sink = FileSink(str(tmp_path / "out.json"))
    sink.write(next(map_experiment(CTX, EXP)), {"lastObserved": 1, "runId": "t"})
    assert sink.commit().delivered == 1
    assert not old.exists() and fresh.exists()
    assert read_proposals(str(tmp_path / "out.json"))[0]["aspectName"] == "containerProperties"
