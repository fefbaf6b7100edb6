"""Crawl behaviour against a real server of its own: empty registry, request counts, filters.
Each test works on its own experiments and models (filters keep the others out), so any order
of the tests gives the same results."""
import pytest

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from tests.mlflow_server import mlflow_server

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("mlflow-crawl")) as url:
        yield url


def recipe(url, out, **config):
    return parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": url, **config}},
                         "sink": {"type": "file", "config": {"filename": str(out)}}})


def add_runs(url, experiment, count, model=None):
    from mlflow import MlflowClient

    client = MlflowClient(url)
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
    run_ids = []
    for i in range(count):
        run = client.create_run(exp_id, run_name=f"{experiment}-{i}")
        client.log_param(run.info.run_id, "i", str(i))
        client.log_metric(run.info.run_id, "score", i / 10)
        client.set_terminated(run.info.run_id)
        run_ids.append(run.info.run_id)
    if model:
        if not client.search_registered_models(f"name = '{model}'"):
            client.create_registered_model(model)
        client.create_model_version(model, f"runs:/{run_ids[0]}/m", run_id=run_ids[0])
    return run_ids


def test_empty_registry_is_reported(server, tmp_path):
    report = run_ingest(recipe(server, tmp_path / "o.json", model_pattern={"allow": ["^no-such-model$"]},
                               experiment_pattern={"allow": ["^Default$"]}))
    assert report.ok, report.failures
    assert report.crawled["registered_models"] == 0
    assert any(w["title"] == "Empty registry" and "0 registered models" in w["message"]
               for w in report.warnings)
    assert report.entities["container"] == 1  # the Default experiment
    assert (tmp_path / "o.json").exists()


def test_requests_grow_with_pages_not_entities(server, tmp_path):
    add_runs(server, "paging", 10, model="paging_model")
    first = run_ingest(recipe(server, tmp_path / "a.json"), dry_run=True)
    add_runs(server, "paging", 10, model="paging_model")  # twice the runs, still one page
    second = run_ingest(recipe(server, tmp_path / "b.json"), dry_run=True)
    assert second.crawled["runs"] == first.crawled["runs"] + 10
    assert second.crawled["model_versions"] == first.crawled["model_versions"] + 1
    assert second.source_requests == first.source_requests
    assert second.point_lookups == first.point_lookups == 0
    # experiments, runs, registered models, versions: one page each
    assert first.source_requests == 4
    # with a page of 5 runs, 25 runs need more pages: requests follow pages
    paged = run_ingest(recipe(server, tmp_path / "c.json", runs_page_size=5), dry_run=True)
    assert paged.source_requests == 3 + -(-paged.crawled["runs"] // 5)


def test_filters_and_runs_off_still_resolve_version_runs_in_bulk(server, tmp_path):
    add_runs(server, "excluded-exp", 2, model="kept_model")
    add_runs(server, "excluded-exp", 1, model="dropped_model")
    report = run_ingest(recipe(server, tmp_path / "f.json",
                               experiment_pattern={"deny": ["excluded-"]},
                               model_pattern={"allow": ["kept_"]},
                               include_runs=False))
    assert report.ok, report.failures
    assert report.crawled["registered_models"] == 1 and "runs" not in report.crawled
    assert report.point_lookups == 0  # version runs came from one bulk search by id
    import json
    records = json.loads((tmp_path / "f.json").read_text())
    urns = {r["entityUrn"] for r in records}
    assert not any("dropped_model" in u for u in urns)
    assert not any(r["entityType"] == "dataProcessInstance" for r in records)
    kept = [r["aspect"]["json"] for r in records
            if r["entityUrn"] == "urn:li:mlModel:(urn:li:dataPlatform:mlflow,kept_model_1,PROD)"
            and r["aspectName"] == "mlModelProperties"][0]
    assert kept["hyperParams"] == [{"name": "i", "value": "0"}]
    assert kept["trainingMetrics"] == [{"name": "score", "value": "0.0"}]
