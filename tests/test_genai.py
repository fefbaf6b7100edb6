"""MLflow 3's GenAI objects against a real server populated through MLflow's GenAI APIs: prompts
(versions, aliases, a chat template), agents (a registered one reading a dataset and linking a
prompt version, an unregistered one), beside a plain registered model. The output validates with
DataHub's schema classes; an incremental run after a new prompt version sends only that change."""
import json

import pytest

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from tests.catalog_validation import validate_file
from tests.expectations import run_urn
from tests.mlflow_server import mlflow_server
from tests.seeding_genai import SUPPORT_TEMPLATE, seed_genai

pytestmark = pytest.mark.server
GENAI = {"include_prompts": True, "include_agents": True}
TICKETS = "urn:li:dataset:(urn:li:dataPlatform:mlflow,tickets@"


def group(name):
    return f"urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,{name},PROD)"


def model(name):
    return f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,{name},PROD)"


@pytest.fixture(scope="module")
def genai(tmp_path_factory):
    with mlflow_server(tmp_path_factory.mktemp("genai")) as url:
        yield url, seed_genai(url)


def ingest(url, out, **config):
    report = run_ingest(parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": url, **config}},
                                      "sink": {"type": "file", "config": {"filename": str(out)}}}))
    assert report.ok, report.failures
    records = validate_file(out)
    by_urn: dict = {}
    for r in records:
        aspects = by_urn.setdefault(r["entityUrn"], {})
        if r["aspectName"].endswith("Properties"):  # a prompt never sent as a plain model too
            assert r["aspectName"] not in aspects, f"{r['entityUrn']} {r['aspectName']} sent twice"
        aspects[r["aspectName"]] = r["aspect"]["json"]
    return by_urn, report


def test_prompts_become_groups_and_versions_with_their_templates(genai, tmp_path):
    url, _ = genai
    a, report = ingest(url, tmp_path / "out.json", **GENAI)
    prompt = a[group("support-answer")]
    assert prompt["subTypes"] == {"typeNames": ["Prompt"]}
    assert prompt["mlModelGroupProperties"]["version"] == {"versionTag": "2"}
    assert prompt["mlModelGroupProperties"]["customProperties"] == {"team": "support"}
    assert prompt["mlModelGroupProperties"]["externalUrl"].endswith("/#/prompts/support-answer")
    v2 = a[model("support-answer_2")]
    assert v2["subTypes"] == {"typeNames": ["Prompt Version"]}
    assert v2["documentation"]["documentations"][0]["documentation"] == f"```\n{SUPPORT_TEMPLATE}\n```"
    props = v2["mlModelProperties"]
    assert props["description"] == "names the customer"
    assert props["groups"] == [group("support-answer")]
    assert props["customProperties"] == {"mlflow#model_config": '{"temperature": 0.1}', "mlflow#prompt_type": "text",
                                         "mlflow#response_format": '{"type": "object"}', "mlflow#status": "READY"}
    assert v2["versionProperties"]["aliases"] == [{"versionTag": "production"}]
    assert v2["versionProperties"]["isLatest"] is True
    assert a[model("support-answer_1")]["versionProperties"]["isLatest"] is False
    chat = a[model("triage_1")]["documentation"]["documentations"][0]["documentation"]
    assert chat == "**system**\n\n```\nSort {{ticket}}.\n```\n\n**user**\n\n```\n{{ticket}}\n```"
    # a prompt is never a plain model group as well; the plain model is not a prompt
    assert "subTypes" not in a[group("ranker")]
    assert report.crawled["prompts"] == 2 and report.crawled["prompt_versions"] == 3
    assert report.crawled["registered_models"] == 2  # ranker and support-agent, not the prompts


def test_agent_links_its_versions_prompts_and_datasets(genai, tmp_path):
    url, facts = genai
    a, report = ingest(url, tmp_path / "out.json", **GENAI)
    agent = a[f"urn:li:aiAgent:support-agent_{facts['agent_id']}"]
    assert agent["aiAgentInfo"]["name"] == "support-agent"
    assert agent["aiAgentInfo"]["description"] == "Answers support tickets"
    assert agent["aiAgentDependencies"] == {"models": [model("support-agent_1"), model("support-answer_2")]}
    [upstream] = agent["upstreamLineage"]["upstreams"]
    assert upstream["dataset"].startswith(TICKETS) and upstream["dataset"] in a
    assert agent["versionProperties"]["version"]["versionTag"] == facts["agent_id"]
    assert agent["status"] == {"removed": False}
    draft = a[f"urn:li:aiAgent:draft-agent_{facts['draft_id']}"]
    assert draft["aiAgentDependencies"] == {"models": [model("triage_1")]}
    assert draft["upstreamLineage"] == {"upstreams": []}  # sent empty: a link gone in MLflow goes
    assert report.crawled["agents"] == 2
    # the registered agent's version stays an mlModel of its registered model, naming the prompt it links
    version = a[model("support-agent_1")]["mlModelProperties"]
    assert version["groups"] == [group("support-agent")]
    assert version["customProperties"]["mlflow#linked_prompts"] == "support-answer/2"


def test_run_links_the_prompt_version_it_loaded(genai, tmp_path):
    """Lineage prompt version -> run -> model: the run's input edges (DataHub renders them)."""
    url, facts = genai
    a, _ = ingest(url, tmp_path / "out.json", **GENAI)
    inputs = a[run_urn(facts["run_id"])]["dataProcessInstanceInput"]
    assert inputs["inputs"][1:] == [model("support-answer_1")] and inputs["inputs"][0].startswith(TICKETS)
    assert inputs["inputEdges"][1] == {"destinationUrn": model("support-answer_1")}
    assert a[model("support-agent_1")]["mlModelProperties"]["trainingJobs"] == [run_urn(facts["run_id"])]
    plain, _ = ingest(url, tmp_path / "plain.json", include_agents=True)  # no prompts: no edge to them
    assert plain[run_urn(facts["run_id"])]["dataProcessInstanceInput"]["inputs"] == inputs["inputs"][:1]
    agent = plain[f"urn:li:aiAgent:support-agent_{facts['agent_id']}"]
    assert agent["aiAgentDependencies"] == {"models": [model("support-agent_1")]}
    assert "mlflow#linked_prompts" not in plain[model("support-agent_1")]["mlModelProperties"]["customProperties"]


def test_agents_as_ml_model_for_an_older_catalog(genai, tmp_path):
    url, facts = genai
    a, _ = ingest(url, tmp_path / "out.json", include_agents=True, agents_as="ml_model", include_logged_models=True)
    assert not [u for u in a if u.startswith("urn:li:aiAgent:")]
    draft = a[model(f"draft-agent_{facts['draft_id']}")]
    assert draft["mlModelProperties"]["customProperties"]["mlflow#model_type"] == "agent"
    # the registered agent is its registry version only, not a second mlModel
    assert model(f"support-agent_{facts['agent_id']}") not in a
    assert model("support-agent_1") in a


def test_platform_instance_names_prompts_and_agents(genai, tmp_path):
    url, facts = genai
    a, _ = ingest(url, tmp_path / "out.json", platform_instance="east", **GENAI)
    instance = {"platform": "urn:li:dataPlatform:mlflow",
                "instance": "urn:li:dataPlatformInstance:(urn:li:dataPlatform:mlflow,east)"}
    prompt = a[group("east.support-answer")]
    assert prompt["dataPlatformInstance"] == instance
    assert a[model("east.support-answer_2")]["mlModelProperties"]["groups"] == [group("east.support-answer")]
    agent = a[f"urn:li:aiAgent:east.support-agent_{facts['agent_id']}"]
    assert agent["dataPlatformInstance"] == instance
    assert agent["aiAgentDependencies"]["models"] == [model("east.support-agent_1"), model("east.support-answer_2")]
    assert not [u for u in a if "support-answer" in u and "east." not in u]


def test_without_the_options_no_prompt_or_agent(genai, tmp_path):
    url, _ = genai
    a, report = ingest(url, tmp_path / "out.json")
    assert group("support-answer") not in a and group("triage") not in a
    assert not [u for u in a if u.startswith("urn:li:aiAgent:")]
    assert "prompts" not in report.crawled and "agents" not in report.crawled


def test_prompt_listing_does_not_grow_with_prompts(tmp_path):
    """Requests for a registry with prompts: the same for 1 prompt as for 30 (bulk listings)."""
    import mlflow

    def add_prompts(numbers):
        for i in numbers:  # two versions each
            mlflow.genai.register_prompt(f"p{i:03d}", template=f"Say {{{{x}}}} #{i}")
            mlflow.genai.register_prompt(f"p{i:03d}", template=f"Say {{{{x}}}} again #{i}")

    counts = []
    with mlflow_server(tmp_path / "server") as url:
        mlflow.set_tracking_uri(url)
        for numbers in (range(1), range(1, 30)):
            add_prompts(numbers)
            _, report = ingest(url, tmp_path / f"out-{len(counts)}.json", include_prompts=True)
            counts.append((report.crawled["prompts"], report.crawled["prompt_versions"], report.source_requests))
    assert [c[:2] for c in counts] == [(1, 2), (30, 60)]
    assert counts[0][2] == counts[1][2]


def test_incremental_run_after_a_new_prompt_version_sends_only_it(tmp_path):
    import mlflow

    with mlflow_server(tmp_path / "server") as url:
        facts = seed_genai(url)
        config = {"pipeline_name": "genai", "state": {"path": str(tmp_path / "state.json")},
                  "source": {"type": "mlflow", "config": {"tracking_uri": url, "incremental": True, **GENAI}}}
        outputs = []

        def run(name):
            out = tmp_path / name
            report = run_ingest(parse_recipe({**config, "sink": {"type": "file", "config": {"filename": str(out)}}}))
            assert report.ok, report.failures
            outputs.append(validate_file(out))
            return report

        assert run("full.json").mode == "full"
        quiet = run("quiet.json")
        assert quiet.mode == "incremental" and quiet.proposals == 0
        mlflow.set_tracking_uri(url)
        mlflow.genai.register_prompt("support-answer", template="Answer {{question}} kindly.")
        changed = run("changed.json")
        assert changed.mode == "incremental" and changed.entities_removed == 0
        sent = {r["entityUrn"] for r in outputs[-1]}
        # the new version, the version it replaced as latest, and the group whose latest version changed
        assert sent == {model("support-answer_3"), model("support-answer_2"), group("support-answer")}
        v3 = {r["aspectName"]: r["aspect"]["json"] for r in outputs[-1] if r["entityUrn"] == model("support-answer_3")}
        assert v3["documentation"]["documentations"][0]["documentation"] == "```\nAnswer {{question}} kindly.\n```"
        assert json.dumps(v3["versionProperties"]["isLatest"]) == "true"
        # a prompt and an agent deleted in MLflow: removed from the catalog (their versions too)
        client = mlflow.MlflowClient(url)
        client.delete_prompt_version("triage", "1")
        client.delete_prompt("triage")
        draft = [m for m in client.search_logged_models([facts["experiment_id"]]) if m.name == "draft-agent"][0]
        client.delete_logged_model(draft.model_id)
        gone = run("gone.json")
        assert gone.mode == "incremental" and gone.entities_removed == 3
        removed = {r["entityUrn"] for r in outputs[-1] if r["aspectName"] == "status"
                   and r["aspect"]["json"] == {"removed": True}}
        assert removed == {group("triage"), model("triage_1"), f"urn:li:aiAgent:draft-agent_{draft.model_id}"}


def test_a_registry_that_lists_prompts_as_models_still_shows_them_once(genai, tmp_path):
    """Another registry may not hide prompts from a plain listing: they stay prompts, not models."""
    from tests.fault_proxy import FaultProxy

    url, _ = genai
    prompt = {"name": "support-answer", "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]}
    version = {"name": "support-answer", "version": "1", "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]}
    with FaultProxy(url) as proxy:
        proxy.add("registered-models/search", "rewrite", not_matching="filter=", rewrite=lambda answer: {
            **answer, "registered_models": [*answer.get("registered_models", []), prompt]})
        proxy.add("model-versions/search", "rewrite", not_matching="filter=", rewrite=lambda answer: {
            **answer, "model_versions": [*answer.get("model_versions", []), version]})
        a, report = ingest(proxy.url, tmp_path / "out.json", **GENAI)
        plain, plain_report = ingest(proxy.url, tmp_path / "plain.json")
    assert a[group("support-answer")]["subTypes"] == {"typeNames": ["Prompt"]}
    assert report.crawled["registered_models"] == plain_report.crawled["registered_models"] == 2
    assert group("support-answer") not in plain and model("support-answer_1") not in plain


def test_a_registry_refusing_the_prompt_filter(genai, tmp_path):
    """Unity Catalog-like refusal: a warning, no prompts, the rest delivered. Another error stops
    the run (an empty listing would remove every prompt)."""
    from tests.fault_proxy import FaultProxy

    url, _ = genai
    recipe = {"source": {"type": "mlflow", "config": {"include_prompts": True}},
              "sink": {"type": "file", "config": {"filename": str(tmp_path / "out.json")}}}
    with FaultProxy(url) as proxy:
        recipe["source"]["config"]["tracking_uri"] = proxy.url
        proxy.add("filter=tags", "mlflow_error", error_code="INVALID_PARAMETER_VALUE")
        refused = run_ingest(parse_recipe(recipe))
        assert refused.ok and refused.crawled["prompts"] == 0
        assert refused.crawled["registered_models"] == 2
        assert any("refused to list prompts" in str(w) for w in refused.warnings)
        proxy.clear()
        proxy.add("filter=tags", "mlflow_error", error_code="INTERNAL_ERROR")
        failed = run_ingest(parse_recipe(recipe))
        assert not failed.ok and "INTERNAL_ERROR" in str(failed.failures)
