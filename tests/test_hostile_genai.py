"""Hostile GenAI inputs against a real MLflow server: odd `mlflow.linkedPrompts` values, prompt
templates holding credentials. Each test reads the output file the run wrote."""
import json
import time

import pytest

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from tests.catalog_validation import validate_file
from tests.genai_kit import ingest_aspects
from tests.mlflow_server import mlflow_server

pytestmark = pytest.mark.server
GENAI = {"include_prompts": True, "include_agents": True}
SECRET = "hunter2-pass"
CREDENTIAL_TEMPLATE = f"Read https://admin:{SECRET}@wiki.example.com/kb?q={{{{q}}}} then answer {{{{q}}}}."
CONTROL_TEMPLATE = "a\x00b \x1b[31mred\x07 ```` {{q}} \u2028 \ud7ff \U0001f600"


def model(name):
    return f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,{name},PROD)"


def _seed(url: str) -> dict:
    import warnings

    import mlflow
    from mlflow import MlflowClient

    warnings.filterwarnings("ignore")
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    mlflow.genai.register_prompt("kb", template="Answer {{q}}.")
    mlflow.genai.register_prompt("kb-secret", template=CREDENTIAL_TEMPLATE)
    mlflow.genai.register_prompt("odd-text", template=CONTROL_TEMPLATE)
    mlflow.genai.register_prompt("long", template="x" * 99_000 + " {{q}}")  # MLflow's limit is 100,000
    client.create_registered_model("ranker", description="a plain model beside the prompts")
    exp = client.create_experiment("hostile-genai")
    for _ in range(40):  # enough entities that removing the prompts stays under the mass-removal ratio
        client.set_terminated(client.create_run(exp).info.run_id)
    odd_links = [{"name": "kb", "version": {"v": 1}}, {"name": "kb", "version": [1]}, {"name": ["kb"], "version": "1"},
                 {"name": "kb", "version": True}, "kb", 5, {"name": "kb", "version": "1"}]
    with mlflow.start_run(experiment_id=exp) as odd:
        mlflow.set_tag("mlflow.linkedPrompts", json.dumps(odd_links))
    from mlflow.genai.datasets import create_dataset
    create_dataset(name="qa", experiment_id=[exp]).merge_records([{"inputs": {"q": "a"}, "expectations": {"e": "b"}}])
    agent = mlflow.create_external_model(name="odd-agent", model_type="agent", experiment_id=exp)
    client.set_logged_model_tags(agent.model_id, {
        "mlflow.linkedPrompts": json.dumps(odd_links),
        "mlflow.modelVersions": json.dumps([{"name": "kb-model", "version": {"v": 2}}, {"name": {}, "version": "1"}])})
    return {"odd_run": odd.info.run_id, "agent_id": agent.model_id}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("hostile-genai")) as url:
        yield url, _seed(url)


ingest = ingest_aspects


def test_linked_prompts_whose_name_or_version_is_no_plain_value_name_no_entity(hostile, tmp_path):
    url, facts = hostile
    a, _ = ingest(url, tmp_path / "out.json", **GENAI)
    from tests.expectations import run_urn
    assert a[run_urn(facts["odd_run"])]["dataProcessInstanceInput"]["inputs"] == [model("kb_1")]
    agent = a[f"urn:li:aiAgent:odd-agent_{facts['agent_id']}"]
    assert agent["aiAgentDependencies"] == {"models": [model("kb_1")]}


def test_prompt_template_url_credentials_are_left_out_of_the_catalog(hostile, tmp_path):
    url, _ = hostile
    out = tmp_path / "out.json"
    a, report = ingest(url, out, **GENAI)
    shown = a[model("kb-secret_1")]["documentation"]["documentations"][0]["documentation"]
    assert shown == "```\nRead https://wiki.example.com/kb?q={{q}} then answer {{q}}.\n```"
    assert SECRET not in out.read_text()
    assert SECRET not in json.dumps(report.as_dict(), default=str)


@pytest.mark.parametrize("incremental", [False, True])
def test_a_refused_prompt_listing_removes_no_prompt_the_state_knows(hostile, tmp_path, incremental):
    """A registry that listed prompts and then refuses the prompt filter (a proxy's 404 during a
    deploy, a server rolled back): a warning, and the prompts stay in the catalog."""
    from tests.fault_proxy import FaultProxy

    url, _ = hostile
    with FaultProxy(url) as proxy:
        recipe = {"pipeline_name": "refused", "state": {"path": str(tmp_path / "state.json")},
                  "source": {"type": "mlflow", "config": {"tracking_uri": proxy.url, **GENAI,
                                                          "incremental": incremental}}}

        def run(name):
            out = tmp_path / name
            report = run_ingest(parse_recipe({**recipe, "sink": {"type": "file", "config": {"filename": str(out)}}}))
            return report, validate_file(out) if out.exists() else []

        first, _ = run("first.json")
        assert first.ok and first.crawled["prompts"] == 4
        proxy.add("filter=tags", "mlflow_error", error_code="ENDPOINT_NOT_FOUND")
        refused, records = run("refused.json")
        assert any("refused to list prompts" in str(w) for w in refused.warnings)
        assert refused.ok and refused.entities_removed == 0, refused.failures
        assert not [r["entityUrn"] for r in records if r["aspect"]["json"] == {"removed": True}]
        proxy.clear()
        again, records = run("again.json")  # listed again: nothing removed, nothing to re-send
        assert again.ok and again.entities_removed == 0


def test_an_evaluation_dataset_listing_answered_404_removes_no_evaluation_dataset(hostile, tmp_path):
    """The datasets API answering 404 (a proxy during a deploy, a server rolled back) after a run
    that listed evaluation datasets: they stay in the catalog."""
    from tests.fault_proxy import FaultProxy

    url, _ = hostile
    with FaultProxy(url) as proxy:
        recipe = {"pipeline_name": "no-datasets-api", "state": {"path": str(tmp_path / "state.json")},
                  "source": {"type": "mlflow", "config": {"tracking_uri": proxy.url, **GENAI,
                                                          "include_evaluation_datasets": True}}}

        def run(name):
            out = tmp_path / name
            report = run_ingest(parse_recipe({**recipe, "sink": {"type": "file", "config": {"filename": str(out)}}}))
            return report, validate_file(out) if out.exists() else []

        first, records = run("first.json")
        assert first.ok and first.crawled["evaluation_datasets"] == 1
        proxy.add("datasets/search", "mlflow_error", error_code="ENDPOINT_NOT_FOUND")
        refused, records = run("refused.json")
        assert refused.ok and refused.entities_removed == 0
        assert not [r["entityUrn"] for r in records if r["aspect"]["json"] == {"removed": True}]


def test_rest_sink_delivers_the_hostile_genai_entities_and_keeps_them_through_a_refused_listing(hostile, tmp_path):
    """The same through the REST sink into the stand-in GMS (DataHub's schema classes check every
    proposal): every proposal delivered, the latest values as the fixes above say."""
    from tests.catalog_server import CatalogServer
    from tests.fault_proxy import FaultProxy

    url, facts = hostile
    with FaultProxy(url) as proxy, CatalogServer() as gms:
        recipe = parse_recipe({
            "pipeline_name": "rest-genai", "state": {"path": str(tmp_path / "state.json")},
            "source": {"type": "mlflow", "config": {"tracking_uri": proxy.url, **GENAI,
                                                    "include_evaluation_datasets": True}},
            "sink": {"type": "datahub-rest", "config": {"server": gms.url,
                                                        "dead_letter_file": str(tmp_path / "dead.json")}}})
        first = run_ingest(recipe)
        assert first.ok and first.delivered == first.proposals > 0 and first.dead_lettered == 0
        proxy.add("filter=tags", "mlflow_error", error_code="ENDPOINT_NOT_FOUND")
        proxy.add("datasets/search", "mlflow_error", error_code="ENDPOINT_NOT_FOUND")
        refused = run_ingest(recipe)
        assert refused.ok and refused.entities_removed == 0
        assert refused.delivered + refused.dead_lettered == refused.proposals and refused.dead_lettered == 0
    assert gms.problems == []
    latest = gms.store
    documentation = latest[(model("kb-secret_1"), "documentation")]["documentations"][0]["documentation"]
    assert SECRET not in documentation and "https://wiki.example.com/kb" in documentation
    from tests.expectations import run_urn
    assert latest[(run_urn(facts["odd_run"]), "dataProcessInstanceInput")]["inputs"] == [model("kb_1")]
    kept = [model("kb_1"), model("kb-secret_1"), "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,kb,PROD)"]
    kept += [u for (u, aspect) in latest if aspect == "subTypes" and latest[(u, aspect)] == {
        "typeNames": ["Evaluation Dataset"]}]
    assert len(kept) == 4 and all(latest[(u, "status")] == {"removed": False} for u in kept)


@pytest.mark.parametrize("listing", ["filter=tags", "datasets/search", "logged-models/search"])
def test_stopped_while_a_genai_listing_hangs_the_run_ends_and_loses_nothing(hostile, tmp_path, listing):
    """SIGTERM (the run's stop token) while MLflow drips the prompt, evaluation dataset or agent
    listing: the run ends at once, every proposal taken is delivered or dead-lettered."""
    import threading

    from connector.run_parts import RunOptions
    from connector.stopping import StopToken
    from tests.catalog_server import CatalogServer
    from tests.fault_proxy import FaultProxy
    from tests.waiting import wait_for

    url, _ = hostile
    stop, reports = StopToken(), {}
    with FaultProxy(url) as proxy, CatalogServer() as gms:
        proxy.add(listing, "drip", interval_sec=5.0)
        recipe = parse_recipe({
            "source": {"type": "mlflow", "config": {"tracking_uri": proxy.url, **GENAI,
                                                    "include_evaluation_datasets": True}},
            "sink": {"type": "datahub-rest", "config": {"server": gms.url,
                                                        "dead_letter_file": str(tmp_path / "dead.json")}}})
        worker = threading.Thread(target=lambda: reports.setdefault("r", run_ingest(recipe, RunOptions(stop=stop))))
        worker.start()
        wait_for(lambda: any(listing in path for _, path in proxy.requests), timeout=120, what=listing)
        stopped_at = time.monotonic()
        stop.request("SIGTERM")
        worker.join(60)
        assert not worker.is_alive() and time.monotonic() - stopped_at < 20
    report = reports["r"]
    assert not report.ok and report.failures[0]["title"] == "Interrupted"
    assert report.delivered + report.dead_lettered == report.proposals
    assert len(gms.received) == report.delivered


def test_datahub_ingest_plugin_sends_what_the_file_sink_writes(hostile, tmp_path):
    """The plugin's work units (avrogen's dict built directly) for templates with control
    characters, a NUL and 99,000 characters: the same proposals as our file sink."""
    from tests.test_datahub_ingest import canonical, datahub_ingest

    url, _ = hostile
    config = {"tracking_uri": url, **GENAI, "include_evaluation_datasets": True}
    (tmp_path / "home").mkdir()
    ours = tmp_path / "ours.json"
    ingest(url, ours, **{k: v for k, v in config.items() if k != "tracking_uri"})
    proc, report, _ = datahub_ingest(tmp_path, "hostile", config,
                                     {"type": "file", "config": {"filename": str(tmp_path / "theirs.json")}})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    theirs = json.loads((tmp_path / "theirs.json").read_text())
    key = lambda r: (r["entityUrn"], r["aspectName"])  # noqa: E731
    assert sorted(canonical(theirs), key=key) == sorted(canonical(json.loads(ours.read_text())), key=key)
    odd = [r for r in theirs if r["entityUrn"] == model("odd-text_1") and r["aspectName"] == "documentation"]
    assert CONTROL_TEMPLATE in odd[0]["aspect"]["json"]["documentations"][0]["documentation"]


def test_killed_mid_runs_page_then_resumed_with_genai_ends_as_one_clean_crawl(hostile, tmp_path):
    """SIGKILL after a few runs-page checkpoints of a resumable full crawl with prompts, agents and
    evaluation datasets; `--resume` sends no delivered run again, and the catalog ends as after
    one clean crawl (the GenAI listings come after the runs: the resumed run lists them whole)."""
    import signal
    import subprocess
    import sys

    from connector.state.store import StateFile, expand
    from tests.catalog_server import CatalogServer

    url, _ = hostile
    cli = [sys.executable, "-m", "connector.cli"]

    def recipe(gms, name, state):
        path = tmp_path / f"{name}.yml"
        path.write_text(json.dumps({
            "pipeline_name": "genai-backfill", "state": {"path": str(tmp_path / state)},
            "source": {"type": "mlflow", "config": {"tracking_uri": url, "runs_page_size": 4, **GENAI,
                                                    "include_evaluation_datasets": True}},
            "sink": {"type": "datahub-rest", "config": {
                "server": gms.url, "max_batch_size": 5, "max_in_flight": 1, "retry_backoff_sec": 0.01,
                "dead_letter_file": str(tmp_path / f"{name}.dead.json")}}}))
        return str(path)

    with CatalogServer() as clean:
        done = subprocess.run(cli + ["ingest", "-c", recipe(clean, "clean", "clean.json")],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    with CatalogServer() as catalog:
        catalog.stall_first, catalog.stall_seconds = 10**6, 0.05
        path = recipe(catalog, "victim", "state.json")
        victim = subprocess.Popen(cli + ["ingest", "-c", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        state = StateFile(tmp_path / "state.json")

        def runs_checkpointed():
            backfill = state.load("genai-backfill").backfill if (tmp_path / "state.json").exists() else None
            return backfill and sum(u.startswith("urn:li:dataProcessInstance:") for u in
                                    expand(backfill["fingerprints"])) >= 8
        from tests.waiting import wait_for
        wait_for(runs_checkpointed, timeout=120, what="8 runs checkpointed")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        backfill = state.load("genai-backfill").backfill
        delivered = {u for u in expand(backfill["fingerprints"]) if u.startswith("urn:li:dataProcessInstance:")}
        before = len(catalog.received)
        catalog.stall_first = 0
        resumed = subprocess.run(cli + ["ingest", "-c", path, "--resume"], capture_output=True, text=True, timeout=300)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        resent = {r["entityUrn"] for r in catalog.received[before:]}
    assert delivered and not (delivered & resent)
    assert catalog.problems == []
    assert catalog.store == clean.store


def test_a_failed_prompt_listing_stops_the_run_removes_nothing_and_loses_nothing(hostile, tmp_path):
    """INTERNAL_ERROR on the prompt listing after a run that delivered the prompts: the run fails,
    what it took is delivered or dead-lettered, and the catalog's prompts stay."""
    from tests.catalog_server import CatalogServer
    from tests.fault_proxy import FaultProxy

    url, _ = hostile
    with FaultProxy(url) as proxy, CatalogServer() as gms:
        recipe = parse_recipe({
            "pipeline_name": "failing-prompts", "state": {"path": str(tmp_path / "state.json")},
            "source": {"type": "mlflow", "config": {"tracking_uri": proxy.url, **GENAI}},
            "sink": {"type": "datahub-rest", "config": {"server": gms.url,
                                                        "dead_letter_file": str(tmp_path / "dead.json")}}})
        assert run_ingest(recipe).ok
        proxy.add("filter=tags", "mlflow_error", error_code="INTERNAL_ERROR")
        failed = run_ingest(recipe)
    assert not failed.ok and "INTERNAL_ERROR" in str(failed.failures)
    assert failed.entities_removed == 0 and failed.delivered + failed.dead_lettered == failed.proposals
    assert gms.problems == []
    assert all(gms.store[(urn, "status")] == {"removed": False} for urn in
               (model("kb_1"), model("long_1"), "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,kb,PROD)"))


def test_an_agent_without_a_run_as_ai_agent_and_as_ml_model(hostile, tmp_path):
    """odd-agent has no run, and its `mlflow.modelVersions` names no version (malformed items): with
    `agents_as: ml_model` it is the LoggedModel's own mlModel (it was left out as if registered)."""
    url, facts = hostile
    a, report = ingest(url, tmp_path / "agent.json", **GENAI)
    agent = a[f"urn:li:aiAgent:odd-agent_{facts['agent_id']}"]
    assert agent["upstreamLineage"] == {"upstreams": []} and agent["aiAgentInfo"]["name"] == "odd-agent"
    b, _ = ingest(url, tmp_path / "model.json", **GENAI, agents_as="ml_model")
    as_model = [u for u in b if u.startswith("urn:li:mlModel:") and facts["agent_id"] in u]
    assert len(as_model) == 1 and b[as_model[0]]["mlModelProperties"]["name"].startswith("odd-agent")
    assert not [u for u in b if u.startswith("urn:li:aiAgent:")]
