"""The `datahub ingest` source plugin (type: mlflow-catalog), through DataHub's real CLI against a
real MLflow server: the file sink gets exactly our proposals, datahub-lite loads them, incremental
runs send only the changes, and the state advances only when DataHub's sink delivered everything."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datahub.emitter.mcp import MetadataChangeProposalWrapper

from tests.seeding import new_run
from tests.catalog_server import CatalogServer
from tests.expectations import expected_urns, group_urn, model_urn, run_urn
from tests.mlflow_server import QUIET_ENV, mlflow_server

pytestmark = pytest.mark.server
BIN = Path(sys.executable).parent


def run_cli(tool: str, args: list, home: Path, timeout=300) -> subprocess.CompletedProcess:
    """`datahub` or `mlflow-catalog` from this venv, with HOME (DataHub's ~/.datahubenv) in tmp."""
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **QUIET_ENV, "HOME": str(home)})


def printed_report(output: str, header: str) -> dict:
    """A report `datahub ingest` prints (a Python literal after HEADER). Its `--report-to FILE` is not
    used: acryl-datahub 1.7's file sink never calls the reporters (its close() skips super().close())."""
    body = output[output.index(header) + len(header):].lstrip()
    depth = 0
    for end, char in enumerate(body):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0:
            return ast.literal_eval(body[:end + 1])
    raise AssertionError(f"no report after {header!r}")


def datahub_ingest(tmp: Path, name: str, source_config: dict, sink: dict, pipeline="dh-plugin"):
    """Run `datahub ingest -c` over a recipe; (process, DataHub's source report or None, its sink report)."""
    recipe = tmp / f"{name}.yml"
    recipe.write_text(json.dumps({"pipeline_name": pipeline, "source": {
        "type": "mlflow-catalog", "config": source_config}, "sink": sink}))  # JSON is YAML
    proc = run_cli("datahub", ["ingest", "-c", str(recipe)], tmp / "home")
    if "Source (mlflow-catalog) report:" not in proc.stdout:
        return proc, None, None
    return (proc, printed_report(proc.stdout, "Source (mlflow-catalog) report:"),
            printed_report(proc.stdout, f"Sink ({sink['type']}) report:"))


def without_system_metadata(record: dict) -> dict:
    return {k: v for k, v in record.items() if k != "systemMetadata"}


def canonical(records: list) -> list:
    """Proposals as DataHub reads them (its schema fills declared defaults), without systemMetadata."""
    out = []
    for record in records:
        obj = MetadataChangeProposalWrapper.from_obj({k: v for k, v in record.items() if k != "systemMetadata"})
        out.append(obj.to_obj(simplified_structure=True))
    return out


@pytest.fixture(scope="module")
def file_runs(seeded_server, tmp_path_factory):
    """The same source config through our CLI and through `datahub ingest`, both to a file."""
    url, seeded, _ = seeded_server
    tmp = tmp_path_factory.mktemp("dh-file")
    ours_recipe = tmp / "ours.yml"
    ours_recipe.write_text(json.dumps({"pipeline_name": "ours", "source": {"type": "mlflow", "config": {
        "tracking_uri": url}}, "sink": {"type": "file", "config": {"filename": str(tmp / "ours.json")}}}))
    ours = run_cli("mlflow-catalog", ["ingest", "-c", str(ours_recipe), "--report-file", str(tmp / "ours.report.json")],
                   tmp / "home")
    assert ours.returncode == 0, ours.stderr[-3000:]
    proc, report, sink_report = datahub_ingest(tmp, "dh", {"tracking_uri": url},
                                               {"type": "file", "config": {"filename": str(tmp / "dh.json")}})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return seeded, tmp, json.loads((tmp / "ours.report.json").read_text()), (report, sink_report)


def test_file_sink_gets_exactly_our_proposals(file_runs):
    seeded, tmp, ours_report, _ = file_runs
    ours = json.loads((tmp / "ours.json").read_text())
    theirs = json.loads((tmp / "dh.json").read_text())
    assert len(theirs) == len(ours) == ours_report["proposals"]
    assert {r["entityUrn"] for r in theirs} == expected_urns(seeded)
    # the same proposals in the same order, aspects verbatim (raw MCPs: no transformer, no lite sink)
    assert [without_system_metadata(r) for r in theirs] == [without_system_metadata(r) for r in ours]
    # DataHub stamps its own run id and the pipeline name; no processor added aspects (status, browse paths)
    assert {r["systemMetadata"]["pipelineName"] for r in theirs} == {"dh-plugin"}
    assert sum(r["aspectName"] == "browsePathsV2" for r in theirs) == sum(
        r["aspectName"] == "browsePathsV2" for r in ours)
    check = run_cli("datahub", ["check", "metadata-file", str(tmp / "dh.json")], tmp / "home")
    assert check.returncode == 0, check.stdout + check.stderr


def test_our_figures_are_in_datahubs_source_report(file_runs):
    _, _, ours, (figures, sink_report) = file_runs
    assert figures["crawled"] == ours["crawled"] == {"experiments": 3, "model_versions": 5,
                                                    "registered_models": 2, "runs": 6}
    assert figures["mlflow_requests"] == ours["source_requests"] > 0
    assert figures["proposals"] == figures["proposals_handed_to_datahub"] == figures["events_produced"] \
        == ours["proposals"]
    assert figures["entities_emitted"] == ours["entities"]
    assert figures["mode"] == "full" and figures["failures"] == [] and figures["warnings"] == []
    assert sink_report["total_records_written"] == ours["proposals"]


def test_transformers_see_typed_proposals_and_change_only_what_they_should(file_runs, seeded_server):
    url, _, _ = seeded_server
    _, tmp, _, _ = file_runs
    (tmp / "transformed.yml").write_text(json.dumps({
        "pipeline_name": "dh-plugin", "source": {"type": "mlflow-catalog", "config": {"tracking_uri": url}},
        "transformers": [{"type": "simple_add_ownership", "config": {
            "owner_urns": ["urn:li:corpuser:ml-platform"], "entity_types": ["mlModel", "mlModelGroup"]}}],
        "sink": {"type": "file", "config": {"filename": str(tmp / "transformed.json")}}}))
    proc = run_cli("datahub", ["ingest", "-c", str(tmp / "transformed.yml")], tmp / "home")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    ours = json.loads((tmp / "ours.json").read_text())
    transformed = json.loads((tmp / "transformed.json").read_text())
    owners = {r["entityUrn"]: [o["owner"] for o in r["aspect"]["json"]["owners"]]
              for r in transformed if r["aspectName"] == "ownership"}
    groups_and_models = {r["entityUrn"] for r in ours if r["entityType"] in ("mlModel", "mlModelGroup")}
    ours_owners = {r["entityUrn"]: [o["owner"] for o in r["aspect"]["json"]["owners"]]
                   for r in ours if r["aspectName"] == "ownership"}
    assert set(owners) == groups_and_models  # datasets and experiments were not asked for
    for urn in groups_and_models:  # the owner our mapping gave is kept, the transformer's added
        assert owners[urn] == [*ours_owners.get(urn, []), "urn:li:corpuser:ml-platform"], urn
    # every other proposal is ours, read through DataHub's classes (which spell out schema defaults)
    untouched = [r for r in transformed if r["aspectName"] != "ownership"]
    assert canonical(untouched) == canonical([r for r in ours if r["aspectName"] != "ownership"])


def test_datahub_lite_sink_loads_the_entities(seeded_server, tmp_path):
    url, seeded, _ = seeded_server
    lite_db = tmp_path / "lite.db"
    home = tmp_path / "home"
    home.mkdir()
    # `datahub lite` commands need both sections (SPEC, second-wave facts)
    (home / ".datahubenv").write_text(json.dumps({
        "gms": {"server": "http://127.0.0.1:9", "token": ""},
        "lite": {"type": "sqlite", "config": {"file": str(lite_db)}}}))
    proc, report, sink_report = datahub_ingest(
        tmp_path, "lite", {"tracking_uri": url},
        {"type": "datahub-lite", "config": {"type": "sqlite", "config": {"file": str(lite_db)}}})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert sink_report["total_records_written"] == report["proposals"] > 100
    urns = run_cli("datahub", ["lite", "list-urns"], home)
    assert urns.returncode == 0, urns.stderr
    assert set(urns.stdout.splitlines()) == expected_urns(seeded)
    got = run_cli("datahub", ["lite", "get", "--urn", model_urn("churn_model", 1)], home)
    assert got.returncode == 0, got.stderr
    model = json.loads(got.stdout)
    assert sorted(a["versionTag"] for a in model["versionProperties"]["aliases"]) == ["champion", "stable"]
    assert model["mlModelProperties"]["groups"] == [group_urn("churn_model")]
    assert model["mlModelProperties"]["trainingJobs"] == [run_urn(seeded.runs["baseline"])]


def test_a_config_error_names_the_field(tmp_path):
    proc, _, _ = datahub_ingest(tmp_path, "bad", {"tracking_uri": "http://127.0.0.1:9", "model_patern": {"allow": ["x"]},
                                               "incremental": "sometimes"},
                             {"type": "file", "config": {"filename": str(tmp_path / "bad.json")}})
    assert proc.returncode == 1
    assert "source.config.model_patern: Extra inputs are not permitted" in proc.stderr
    assert "source.config.incremental: Input should be a valid boolean" in proc.stderr
    proc, _, _ = datahub_ingest(tmp_path, "stateful", {"tracking_uri": "http://127.0.0.1:9",
                                                    "stateful_ingestion": {"enabled": True}},
                             {"type": "file", "config": {"filename": str(tmp_path / "bad.json")}})
    assert proc.returncode == 1
    assert "source.config.stateful_ingestion: not supported by mlflow-catalog; use source.config.state" in proc.stderr


# -- state: incremental runs, and the checkpoint only after delivery ------------------------------

@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """A server of its own: these tests change MLflow between runs."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-dh-state")) as url:
        yield url


def test_incremental_second_run_through_datahub_sends_only_the_changes(own_server, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(own_server)
    exp = client.create_experiment("dh-incremental")
    r1, r2 = new_run(client, exp, "r1"), new_run(client, exp, "r2")
    client.create_registered_model("dh_model")
    client.create_model_version("dh_model", f"runs:/{r1}/m", run_id=r1)
    client.set_registered_model_alias("dh_model", "champion", "1")
    config = {"tracking_uri": own_server, "incremental": True, "state": {"path": str(tmp_path / "state.json")}}

    def ingest(name):
        proc, report, _ = datahub_ingest(tmp_path, name, config,
                                         {"type": "file", "config": {"filename": str(tmp_path / f"{name}.json")}})
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
        return {r["entityUrn"] for r in json.loads((tmp_path / f"{name}.json").read_text())}, report

    first, report = ingest("first")
    assert report["mode"] == "full" and {run_urn(r1), run_urn(r2), model_urn("dh_model", 1)} <= first
    saved = json.loads((tmp_path / "state.json").read_text())["pipelines"]["dh-plugin"]["checkpoint"]
    assert report["checkpoint_saved"] == saved

    r3 = new_run(client, exp, "r3")
    client.create_model_version("dh_model", f"runs:/{r3}/m", run_id=r3)
    client.set_registered_model_alias("dh_model", "champion", "2")
    second, report = ingest("second")
    assert report["mode"] == "incremental" and report["checkpoint_before"] == saved
    # the new run, the new version, the version the alias left, their group; nothing else
    assert second == {run_urn(r3), model_urn("dh_model", 1), model_urn("dh_model", 2), group_urn("dh_model")}

    third, report = ingest("third")
    assert third == set() and report["proposals"] == 0 and report["warnings"] == []


def test_state_is_not_saved_when_datahubs_rest_sink_did_not_deliver(own_server, tmp_path):
    """DataHub's REST sink reports a refused batch after its commit step; the plugin waits for it."""
    config = {"tracking_uri": own_server, "state": {"path": str(tmp_path / "state.json")}}
    with CatalogServer() as gms:
        gms.reject = lambda r: "refused" if r["aspectName"] == "versionProperties" else None
        sink = {"type": "datahub-rest", "config": {"server": gms.url}}
        proc, report, sink_report = datahub_ingest(tmp_path, "refused", config, sink, pipeline="dh-rest")
        assert proc.returncode == 1
        assert sink_report["failures"] and [f["message"] for f in report["failures"]] == ["State not saved"]
        assert not (tmp_path / "state.json").exists()

        gms.reject = lambda r: None
        proc, report, _ = datahub_ingest(tmp_path, "delivered", config, sink, pipeline="dh-rest")
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
        state = json.loads((tmp_path / "state.json").read_text())["pipelines"]["dh-rest"]
        assert report["checkpoint_saved"] == state["checkpoint"]
        assert gms.problems == []
        assert {r["entityUrn"] for r in gms.received} >= {group_urn("dh_model"), model_urn("dh_model", 2)}

        sync = {"type": "datahub-rest", "config": {"server": gms.url, "mode": "SYNC"}}
        proc, _, _ = datahub_ingest(tmp_path, "sync", config, sync, pipeline="dh-rest")
        assert proc.returncode == 1 and "sink.config.mode: SYNC cannot be used with source.config.state" in proc.stderr


def test_preview_stops_the_crawl_and_saves_no_state(own_server, tmp_path):
    """DataHub stops pulling after N work units: the crawl thread ends, the process exits, no state."""
    config = {"tracking_uri": own_server, "state": {"path": str(tmp_path / "state.json")}}
    recipe = tmp_path / "preview.yml"
    recipe.write_text(json.dumps({"pipeline_name": "dh-preview", "source": {"type": "mlflow-catalog", "config": config},
                                  "sink": {"type": "file", "config": {"filename": str(tmp_path / "preview.json")}}}))
    proc = run_cli("datahub", ["ingest", "-c", str(recipe), "--preview", "--preview-workunits", "3"], tmp_path / "home",
                   timeout=120)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert len(json.loads((tmp_path / "preview.json").read_text())) == 3
    assert not (tmp_path / "state.json").exists()
    assert "Stopped early" in proc.stdout
