"""The whole path against a real MLflow server: crawl -> mapping -> file sink -> catalog validation."""
import json
import subprocess
import sys
from collections import defaultdict

import pytest

from tests.catalog_validation import validate_file
from tests.expectations import (
    CHURN_EVAL, CHURN_TRAIN, ODD_ENC, _guid, exp_urn, expected_urns, group_urn, model_urn, run_urn,
)
from tests.seeding import LONG_PARAM, ODD_EXPERIMENT, ODD_MODEL

pytestmark = pytest.mark.server
CLI = [sys.executable, "-m", "connector.cli"]


def ingest(write_recipe, tmp_path, url, extra="", name="out.json"):
    out = tmp_path / name
    recipe = write_recipe(f"""
pipeline_name: e2e
source:
  type: mlflow
  config:
    tracking_uri: {url}
{extra}
sink:
  type: file
  config:
    filename: {out}
""", name=f"{name}.yml")
    report_file = tmp_path / f"{name}.report.json"
    proc = subprocess.run(CLI + ["ingest", "-c", str(recipe), "--report-file", str(report_file)],
                          capture_output=True, text=True, timeout=300)
    return proc, out, report_file


def by_urn(records):
    aspects = defaultdict(dict)
    for r in records:
        name = r["aspectName"]
        value = r["aspect"]["json"]
        if name == "dataProcessInstanceRunEvent":
            aspects[r["entityUrn"]].setdefault(name, []).append(value)
        else:
            aspects[r["entityUrn"]][name] = value
    return aspects


@pytest.fixture(scope="module")
def full_ingest(seeded_server, tmp_path_factory):
    url, seeded, _ = seeded_server
    tmp = tmp_path_factory.mktemp("e2e")

    def write(text, name):
        p = tmp / name
        p.write_text(text)
        return p
    proc, out, report_file = ingest(write, tmp, url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return seeded, validate_file(out), json.loads(report_file.read_text()), proc


def test_exact_urn_set(full_ingest):
    seeded, records, _, _ = full_ingest
    assert {rec["entityUrn"] for rec in records} == expected_urns(seeded)
    # deleted run and deleted experiment (and its run) are skipped by default
    assert run_urn(seeded.runs["deleted"]) not in expected_urns(seeded)
    assert run_urn(seeded.runs["old"]) not in expected_urns(seeded)


def test_aspects_per_entity(full_ingest):
    seeded, records, _, _ = full_ingest
    a = by_urn(records)
    assert set(a[model_urn("churn_model", 1)]) == {
        "mlModelProperties", "versionProperties", "globalTags", "dataPlatformInstance", "ownership", "status",
        "mlModelTrainingData"}
    assert a[model_urn("churn_model", 1)]["mlModelTrainingData"] == {
        "trainingData": [{"dataset": CHURN_TRAIN}]}
    assert set(a[model_urn(ODD_ENC, 2)]) == {  # no run: no owner known
        "mlModelProperties", "versionProperties", "globalTags", "dataPlatformInstance", "status"}
    assert set(a[group_urn("churn_model")]) == {"mlModelGroupProperties", "dataPlatformInstance", "status"}
    assert set(a[exp_urn("churn-training")]) == {
        "containerProperties", "subTypes", "dataPlatformInstance", "browsePathsV2", "status"}
    assert set(a[run_urn(seeded.runs["baseline"])]) == {
        "dataProcessInstanceProperties", "subTypes", "container", "mlTrainingRunProperties",
        "dataProcessInstanceRunEvent", "dataProcessInstanceInput", "dataProcessInstanceOutput",
        "dataPlatformInstance", "status"}
    assert set(a[CHURN_TRAIN]) == {
        "datasetProperties", "schemaMetadata", "upstreamLineage", "dataPlatformInstance", "status"}


def test_model_versions(full_ingest):
    seeded, records, _, _ = full_ingest
    a = by_urn(records)
    v1 = a[model_urn("churn_model", 1)]
    assert v1["versionProperties"]["aliases"] == [{"versionTag": "champion"}, {"versionTag": "stable"}]
    assert v1["versionProperties"]["sortId"] == "0000000001"
    assert v1["versionProperties"]["versionSet"] == f"urn:li:versionSet:({_guid({'platform': 'mlflow', 'name': 'churn_model'})},mlModel)"
    assert v1["globalTags"] == {"tags": [{"tag": "urn:li:tag:mlflow_production"}]}
    props = v1["mlModelProperties"]
    assert props["groups"] == [group_urn("churn_model")]
    assert props["trainingJobs"] == [run_urn(seeded.runs["baseline"])]
    params = {p["name"]: p["value"] for p in props["hyperParams"]}
    assert params == {"lr": "0.1", "blob": LONG_PARAM}
    metrics = {m["name"]: m["value"] for m in props["trainingMetrics"]}
    # MLflow's sqlite store clamps inf to the largest float; NaN survives
    assert metrics == {"accuracy": "0.91", "loss_nan": "NaN", "loss_inf": "1.7976931348623157e+308"}
    assert props["description"] == "first" and props["customProperties"]["framework"] == "sklearn"
    assert v1["ownership"]["owners"][0]["type"] == "TECHNICAL_OWNER"
    assert v1["ownership"]["owners"][0]["owner"].startswith("urn:li:corpuser:")
    v3 = a[model_urn("churn_model", 3)]
    assert v3["versionProperties"]["aliases"] == [{"versionTag": "challenger"}]
    assert v3["versionProperties"]["isLatest"] is True
    assert v1["versionProperties"]["isLatest"] is False
    assert v3["globalTags"]["tags"] == [{"tag": "urn:li:tag:mlflow_staging"}]
    assert a[model_urn("churn_model", 2)]["versionProperties"]["aliases"] == []
    no_run = a[model_urn(ODD_ENC, 2)]["mlModelProperties"]
    assert no_run["trainingJobs"] == [] and "hyperParams" not in no_run


def test_model_groups(full_ingest):
    seeded, records, _, _ = full_ingest
    a = by_urn(records)
    group = a[group_urn("churn_model")]["mlModelGroupProperties"]
    assert group["version"] == {"versionTag": "3"}
    assert group["trainingJobs"] == [run_urn(seeded.runs["baseline"]), run_urn(seeded.runs["tuned"])]
    assert group["customProperties"] == {"domain": "growth"}
    assert group["description"] == "Predicts churn"
    assert group["externalUrl"].endswith("/#/models/churn_model")
    odd = a[group_urn(ODD_ENC)]["mlModelGroupProperties"]
    assert odd["name"] == ODD_MODEL and odd["trainingJobs"] == [run_urn(seeded.runs["odd"])]


def test_runs(full_ingest):
    seeded, records, _, _ = full_ingest
    a = by_urn(records)
    r = seeded.runs
    baseline = a[run_urn(r["baseline"])]
    assert baseline["container"] == {"container": exp_urn("churn-training")}
    assert baseline["subTypes"] == {"typeNames": ["ML Training Run"]}
    assert [e["status"] for e in baseline["dataProcessInstanceRunEvent"]] == ["STARTED", "COMPLETE"]
    assert baseline["dataProcessInstanceRunEvent"][1]["result"]["type"] == "SUCCESS"
    # every version created from the run, not just the first
    assert [e["destinationUrn"] for e in baseline["dataProcessInstanceOutput"]["outputEdges"]] == [
        model_urn("churn_model", 1), model_urn("churn_model", 2)]
    assert [e["destinationUrn"] for e in baseline["dataProcessInstanceInput"]["inputEdges"]] == [
        CHURN_TRAIN,
        CHURN_EVAL]
    assert baseline["dataProcessInstanceProperties"]["name"] == "baseline"
    assert baseline["mlTrainingRunProperties"]["id"] == r["baseline"]
    tuned = a[run_urn(r["tuned"])]["dataProcessInstanceRunEvent"]
    assert tuned[-1]["result"]["type"] == "FAILURE"
    killed = a[run_urn(r["killed"])]["dataProcessInstanceRunEvent"]
    assert killed[-1]["result"]["type"] == "SKIPPED"
    running = a[run_urn(r["running"])]["dataProcessInstanceRunEvent"]
    assert [e["status"] for e in running] == ["STARTED"]  # no COMPLETE for a RUNNING run
    default = a[run_urn(r["default"])]
    assert default["container"] == {"container": exp_urn("Default")}
    assert default["dataProcessInstanceProperties"]["name"]  # MLflow generates a run name
    odd = a[run_urn(r["odd"])]
    assert odd["dataProcessInstanceProperties"]["name"] == "fraud ünï (1)"
    assert odd["container"] == {"container": exp_urn(ODD_EXPERIMENT)}


def test_experiments_and_datasets(full_ingest):
    _, records, _, _ = full_ingest
    a = by_urn(records)
    churn = a[exp_urn("churn-training")]
    assert churn["subTypes"] == {"typeNames": ["ML Experiment"]}
    assert churn["containerProperties"]["description"] == "Churn models"
    assert churn["containerProperties"]["customProperties"]["team"] == "growth"
    assert a[exp_urn(ODD_EXPERIMENT)]["containerProperties"]["name"] == ODD_EXPERIMENT
    train = a[CHURN_TRAIN]
    assert [f["fieldPath"] for f in train["schemaMetadata"]["fields"]] == ["age", "income", "churned"]
    assert train["upstreamLineage"]["upstreams"][0]["dataset"] == \
        "urn:li:dataset:(urn:li:dataPlatform:s3,ml-data/churn/train.parquet,PROD)"
    evaluation = a[CHURN_EVAL]
    assert evaluation["upstreamLineage"]["upstreams"][0]["dataset"] == \
        "urn:li:dataset:(urn:li:dataPlatform:gcs,ml-data/churn/eval.parquet,PROD)"


def test_system_metadata_and_report(full_ingest):
    _, records, report, proc = full_ingest
    run_ids = {r["systemMetadata"]["runId"] for r in records}
    assert run_ids == {report["run_id"]} and report["run_id"].startswith("e2e-")
    assert report["status"] == "success" and report["failure_count"] == 0
    assert report["durations"]["total_sec"] >= report["durations"]["crawl_sec"] > 0
    assert report["proposals"] == len(records) == report["delivered"]
    assert report["entities"]["mlModel"] == 5 and report["entities"]["dataProcessInstance"] == 6
    assert report["crawled"]["registered_models"] == 2
    assert "MLflow ingestion report" in proc.stdout


def test_output_is_deterministic(seeded_server, write_recipe, tmp_path, full_ingest):
    url, _, _ = seeded_server
    _, first, _, _ = full_ingest
    proc, out, _ = ingest(write_recipe, tmp_path, url, name="again.json")
    assert proc.returncode == 0, proc.stderr
    second = json.loads(out.read_text())
    def strip(recs):
        return [{k: v for k, v in r.items() if k != "systemMetadata"} for r in recs]
    assert strip(first) == strip(second)


def test_include_deleted(seeded_server, write_recipe, tmp_path):
    url, seeded, _ = seeded_server
    proc, out, _ = ingest(write_recipe, tmp_path, url, "    include_deleted: true")
    assert proc.returncode == 0, proc.stderr
    a = by_urn(json.loads(out.read_text()))
    assert a[run_urn(seeded.runs["deleted"])]["status"] == {"removed": True}
    assert a[run_urn(seeded.runs["old"])]["status"] == {"removed": True}
    assert a[exp_urn("old-experiment")]["status"] == {"removed": True}


def test_local_store_without_server_gives_same_output(seeded_server, write_recipe, tmp_path, full_ingest):
    url, _, db = seeded_server
    _, via_server, _, _ = full_ingest
    extra = f"    base_external_url: {url}"
    recipe = write_recipe(f"""
source:
  type: mlflow
  config:
    tracking_uri: sqlite:///{db}
{extra}
sink:
  type: file
  config:
    filename: {tmp_path / 'local.json'}
""")
    proc = subprocess.run(CLI + ["ingest", "-c", str(recipe)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    local = json.loads((tmp_path / "local.json").read_text())
    def strip(recs):
        return [{k: v for k, v in r.items() if k != "systemMetadata"} for r in recs]
    assert strip(local) == strip(via_server)
