"""MLflow 3 GenAI evaluation against a real server seeded through MLflow's own APIs
(tests/seeding_evaluation.py): evaluation datasets with their schema, evaluation runs with their
scorers, the models they evaluated pointing at both; incremental runs, removal, DataHub Lite and
the `datahub ingest` plugin."""
import json
import os

import pytest

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from tests.catalog_validation import validate_file
from tests.genai_kit import ingest_aspects
from tests.expectations import _guid, model_urn, run_urn
from tests.mlflow_server import mlflow_server
from tests.seeding_evaluation import seed_evaluation

pytestmark = pytest.mark.server
ON = {"include_evaluation_datasets": True, "include_logged_models": True}


def eval_dataset_urn(name, dataset_id, instance=None):
    """NAME@ first 12 hex digits of GUID({source_type, dataset_id}), as a run's input of it."""
    source_id = _guid({"source_type": "mlflow_evaluation_dataset", "dataset_id": dataset_id})[:12]
    qualified = f"{instance}.{name}" if instance else name
    return f"urn:li:dataset:(urn:li:dataPlatform:mlflow,{qualified}@{source_id},PROD)"


def agent_urn(facts):
    return f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,support_agent_{facts.agent_model_id},PROD)"


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    import mlflow
    from mlflow.tracking import fluent

    root = tmp_path_factory.mktemp("genai-eval")
    saved = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}
    try:
        with mlflow_server(root) as url:
            facts = seed_evaluation(url)
            facts.db = root / "mlflow.db"
            yield facts
    finally:  # MLflow's GenAI APIs work on process-wide state (and MLFLOW_* variables): later tests must not
        mlflow.clear_active_model()  # inherit the tracking and registry URIs or the experiment
        fluent._active_experiment_id = None
        mlflow.set_tracking_uri(saved.get("MLFLOW_TRACKING_URI"))
        mlflow.set_registry_uri(saved.get("MLFLOW_REGISTRY_URI"))  # type: ignore[arg-type]
        for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
            del os.environ[key]
        os.environ.update(saved)


ingest = ingest_aspects


def test_evaluation_dataset_with_its_schema(evaluated, tmp_path):
    a, report = ingest(evaluated.url, tmp_path / "out.json", **ON)
    dataset = a[eval_dataset_urn("qa_eval", evaluated.dataset_id)]
    props = dataset["datasetProperties"]
    assert props["name"] == "qa_eval" and props["tags"] == ["team:assistants"]
    assert props["customProperties"]["dataset_id"] == evaluated.dataset_id
    assert props["customProperties"]["num_records"] == "2"
    assert props["customProperties"]["source_type"] == "mlflow_evaluation_dataset"
    assert props["created"]["time"] <= props["lastModified"]["time"]
    assert dataset["subTypes"] == {"typeNames": ["Evaluation Dataset"]}
    fields = {f["fieldPath"]: f["nativeDataType"] for f in dataset["schemaMetadata"]["fields"]}
    assert fields == {"inputs.question": "string", "expectations.expected_response": "string"}
    assert report.crawled["evaluation_datasets"] == 1


def test_evaluation_runs_and_the_models_they_evaluated(evaluated, tmp_path):
    a, _ = ingest(evaluated.url, tmp_path / "out.json", **ON)
    dataset = eval_dataset_urn("qa_eval", evaluated.dataset_id)
    for run_id, model in ((evaluated.bot_run_id, model_urn("qa_bot", 1)), (evaluated.agent_run_id, agent_urn(evaluated))):
        run = a[run_urn(run_id)]
        assert run["subTypes"] == {"typeNames": ["Evaluation Run"]}
        assert run["dataProcessInstanceProperties"]["customProperties"]["mlflow#evaluation_scorers"] == \
            "exact_match, short_answer"
        # its inputs: the dataset entity (the same URN) and the model it evaluated
        assert run["dataProcessInstanceInput"]["inputs"] == [dataset, model]
        assert a[model]["mlModelEvaluationData"] == {"evaluationData": [{"dataset": dataset}]}
        assert a[model]["mlModelProperties"]["downstreamJobs"] == [run_urn(run_id)]
        metrics = {m["name"]: m["value"] for m in a[model]["mlModelProperties"]["trainingMetrics"]}
        assert metrics["exact_match/mean"] == "0.5" and metrics["short_answer/mean"] == "1.0"


def test_off_by_default_and_with_a_platform_instance(evaluated, tmp_path):
    a, report = ingest(evaluated.url, tmp_path / "off.json")
    dataset = a[eval_dataset_urn("qa_eval", evaluated.dataset_id)]  # described from the run's input only
    assert "subTypes" not in dataset and "evaluation_datasets" not in report.crawled
    assert "downstreamJobs" not in a[model_urn("qa_bot", 1)]["mlModelProperties"]
    b, _ = ingest(evaluated.url, tmp_path / "inst.json", platform_instance="eu", **ON)
    urn = eval_dataset_urn("qa_eval", evaluated.dataset_id, instance="eu")
    assert b[urn]["dataPlatformInstance"]["instance"] == "urn:li:dataPlatformInstance:(urn:li:dataPlatform:mlflow,eu)"
    named = eval_dataset_urn("qa_eval", evaluated.dataset_id).split("@")[0] + ",PROD)"
    c, _ = ingest(evaluated.url, tmp_path / "named.json", dataset_urn="name", **ON)
    assert c[named]["subTypes"] == {"typeNames": ["Evaluation Dataset"]}
    assert c[model_urn("qa_bot", 1)]["mlModelEvaluationData"] == {"evaluationData": [{"dataset": named}]}


def test_a_store_read_in_process_gives_the_same_entities(evaluated, tmp_path):
    over_http, _ = ingest(evaluated.url, tmp_path / "http.json", **ON)
    in_process, report = ingest(f"sqlite:///{evaluated.db}", tmp_path / "store.json", **ON)
    urn = eval_dataset_urn("qa_eval", evaluated.dataset_id)
    assert in_process[urn] == over_http[urn] and report.crawled["evaluation_datasets"] == 1
    assert in_process[model_urn("qa_bot", 1)]["mlModelEvaluationData"] == over_http[model_urn("qa_bot", 1)][
        "mlModelEvaluationData"]


def test_loads_into_datahub_lite(evaluated, tmp_path):
    from tests.test_datahub_lite import datahub

    out = tmp_path / "out.json"
    ingest(evaluated.url, out, **ON)
    lite = {"type": "duckdb", "config": {"file": str(tmp_path / "lite.duckdb")}}
    (tmp_path / ".datahubenv").write_text(json.dumps({"gms": {"server": "http://127.0.0.1:9"}, "lite": lite}))
    recipe = tmp_path / "load.yml"
    recipe.write_text(json.dumps({"source": {"type": "file", "config": {"path": str(out)}},
                                  "sink": {"type": "datahub-lite", "config": lite}}))
    datahub(tmp_path, "ingest", "-c", str(recipe))
    dataset = json.loads(datahub(tmp_path, "lite", "get", "--urn", eval_dataset_urn("qa_eval", evaluated.dataset_id)))
    assert [f["fieldPath"] for f in dataset["schemaMetadata"]["fields"]] == ["inputs.question",
                                                                           "expectations.expected_response"]
    model = json.loads(datahub(tmp_path, "lite", "get", "--urn", model_urn("qa_bot", 1)))
    assert model["mlModelEvaluationData"]["evaluationData"][0]["dataset"] == eval_dataset_urn(
        "qa_eval", evaluated.dataset_id)


def test_datahub_ingest_plugin_emits_them(evaluated, tmp_path):
    from tests.test_datahub_ingest import datahub_ingest

    out = tmp_path / "dh.json"
    proc, report, _ = datahub_ingest(tmp_path, "dh", {"tracking_uri": evaluated.url, **ON},
                                     {"type": "file", "config": {"filename": str(out)}}, pipeline="dh-eval")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    records = json.loads(out.read_text())
    dataset = eval_dataset_urn("qa_eval", evaluated.dataset_id)
    assert {r["aspectName"] for r in records if r["entityUrn"] == dataset} >= {"datasetProperties", "schemaMetadata"}


# last: it adds an evaluation and deletes a dataset
def test_incremental_runs_send_the_new_evaluation_then_remove_a_deleted_dataset(evaluated, tmp_path):
    import mlflow
    from mlflow.genai.datasets import create_dataset, delete_dataset, get_dataset

    from tests.seeding_evaluation import QUESTIONS, evaluate

    mlflow.set_tracking_uri(evaluated.url)
    scratch = create_dataset(name="scratch_eval", experiment_id=[evaluated.experiment_id])
    scratch.merge_records(QUESTIONS[:1])
    config = {"pipeline_name": "genai-eval", "state": {"path": str(tmp_path / "state.json")},
              "source": {"type": "mlflow", "config": {"tracking_uri": evaluated.url, "incremental": True, **ON}}}

    def run(name):
        report = run_ingest(parse_recipe({**config, "sink": {"type": "file", "config": {
            "filename": str(tmp_path / name)}}}))
        assert report.ok, report.failures
        return report, validate_file(tmp_path / name)

    assert run("full.json")[0].mode == "full"
    unchanged, records = run("same.json")
    assert unchanged.mode == "incremental" and records == []
    new_run = evaluate(evaluated.agent_model_id, get_dataset(dataset_id=evaluated.dataset_id))
    report, records = run("new-eval.json")
    # the new run, and the agent whose metrics it moved (and which now lists it)
    assert {r["entityUrn"] for r in records} == {run_urn(new_run), agent_urn(evaluated)}
    agent = {r["aspectName"]: r["aspect"]["json"] for r in records if r["entityUrn"] == agent_urn(evaluated)}
    assert agent["mlModelProperties"]["downstreamJobs"] == sorted(
        [run_urn(evaluated.agent_run_id), run_urn(new_run)])
    delete_dataset(dataset_id=scratch.dataset_id)
    report, records = run("deleted.json")
    assert [(r["entityUrn"], r["aspect"]["json"]) for r in records if r["aspectName"] == "status"] == [
        (eval_dataset_urn("scratch_eval", scratch.dataset_id), {"removed": True})]
    assert report.entities_removed == 1


def test_an_agent_kept_as_ml_model_shows_its_evaluations(evaluated, tmp_path):
    """agents_as: ml_model (a catalog older than DataHub 1.7): the agent's mlModel points at its
    evaluation dataset and run as any model does; as an aiAgent it has no aspect for them."""
    a, _ = ingest(evaluated.url, tmp_path / "out.json", include_agents=True, agents_as="ml_model", **ON)
    agent = a[agent_urn(evaluated)]
    assert agent["mlModelEvaluationData"] == {"evaluationData": [{"dataset": eval_dataset_urn("qa_eval", evaluated.dataset_id)}]}
    jobs = agent["mlModelProperties"]["downstreamJobs"]  # (the incremental test evaluates it once more)
    assert run_urn(evaluated.agent_run_id) in jobs and jobs == sorted(jobs)
