"""Prompts and agents through DataHub's own tools: the `datahub ingest` plugin (type: mlflow-catalog)
writes them into DataHub Lite, and `datahub lite get` reads back the prompt version (template,
alias, group) and the agent (dependencies, upstream dataset)."""
import json

import pytest

from tests.mlflow_server import mlflow_server
from tests.seeding_genai import SUPPORT_TEMPLATE, seed_genai
from tests.test_datahub_ingest import datahub_ingest, run_cli

pytestmark = pytest.mark.server


def test_plugin_loads_prompts_and_agents_into_datahub_lite(tmp_path):
    from datahub.ingestion.sink.datahub_lite import DataHubLiteSinkConfig

    store = DataHubLiteSinkConfig.model_fields["type"].default
    lite_db = tmp_path / f"lite.{store}"
    home = tmp_path / "home"
    home.mkdir()
    (home / ".datahubenv").write_text(json.dumps({
        "gms": {"server": "http://127.0.0.1:9", "token": ""},
        "lite": {"type": store, "config": {"file": str(lite_db)}}}))
    with mlflow_server(tmp_path / "server") as url:
        facts = seed_genai(url)
        proc, report, sink_report = datahub_ingest(
            tmp_path, "genai", {"tracking_uri": url, "include_prompts": True, "include_agents": True},
            {"type": "datahub-lite", "config": {"type": store, "config": {"file": str(lite_db)}}})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert sink_report["total_records_written"] == report["proposals"]

    def get(urn):
        got = run_cli("datahub", ["lite", "get", "--urn", urn], home)
        assert got.returncode == 0, got.stderr
        return json.loads(got.stdout)

    version = get("urn:li:mlModel:(urn:li:dataPlatform:mlflow,support-answer_2,PROD)")
    assert version["documentation"]["documentations"][0]["documentation"] == f"```\n{SUPPORT_TEMPLATE}\n```"
    assert version["versionProperties"]["aliases"] == [{"versionTag": "production"}]
    assert version["subTypes"] == {"typeNames": ["Prompt Version"]}
    prompt = get(version["mlModelProperties"]["groups"][0])
    assert prompt["subTypes"] == {"typeNames": ["Prompt"]}
    agent = get(f"urn:li:aiAgent:support-agent_{facts['agent_id']}")
    assert agent["aiAgentInfo"]["description"] == "Answers support tickets"
    assert "urn:li:mlModel:(urn:li:dataPlatform:mlflow,support-answer_2,PROD)" in agent["aiAgentDependencies"]["models"]
    dataset = agent["upstreamLineage"]["upstreams"][0]["dataset"]
    assert get(dataset)["datasetProperties"]["name"] == "tickets"
