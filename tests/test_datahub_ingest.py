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

# make test runs these on the newest acryl-datahub (.venv) and again on the oldest (.venv-datahub-oldest)
pytestmark = [pytest.mark.server, pytest.mark.datahub_versions]
BIN = Path(sys.executable).parent


def run_cli(tool: str, args: list, home: Path, timeout=300) -> subprocess.CompletedProcess:
    """`datahub` or `mlflow-catalog` from this venv, with HOME (DataHub's ~/.datahubenv) and the
    working directory (where a relative state path lands) in tmp."""
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **QUIET_ENV, "HOME": str(home)}, cwd=home)


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
    from datahub.ingestion.sink.datahub_lite import DataHubLiteSinkConfig

    url, seeded, _ = seeded_server
    # the embedded store this acryl-datahub uses by default (1.7.0: duckdb; later 1.7.0.x: sqlite)
    store = DataHubLiteSinkConfig.model_fields["type"].default
    lite_db = tmp_path / f"lite.{store}"
    home = tmp_path / "home"
    home.mkdir()
    # `datahub lite` commands need both sections (SPEC, second-wave facts)
    (home / ".datahubenv").write_text(json.dumps({
        "gms": {"server": "http://127.0.0.1:9", "token": ""},
        "lite": {"type": store, "config": {"file": str(lite_db)}}}))
    proc, report, sink_report = datahub_ingest(
        tmp_path, "lite", {"tracking_uri": url},
        {"type": "datahub-lite", "config": {"type": store, "config": {"file": str(lite_db)}}})
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


# DataHub's own MLflow source's keys (datahub.ingestion.source.mlflow.MLflowConfig), all of them
DATAHUB_MLFLOW_RECIPE = {
    "model_name_separator": "-", "base_external_url": "https://mlflow.example.com/",
    "materialize_dataset_inputs": False, "source_mapping_to_platform": {"s3": "glue"},
    "username": "reader", "password": "not-checked-by-this-server", "env": "DEV",
    "stateful_ingestion": {"enabled": True, "remove_stale_metadata": True, "fail_safe_threshold": 75.0},
}


def test_a_recipe_of_datahubs_own_mlflow_source_runs_unchanged(seeded_server, tmp_path):
    """`type: mlflow` -> `type: mlflow-catalog`, nothing else changed: every key keeps its meaning,
    DataHub's stateful_ingestion keeps the checkpoint in GMS."""
    url, seeded, _ = seeded_server
    config = {"tracking_uri": url, "registry_uri": url, **DATAHUB_MLFLOW_RECIPE}
    # the recipe is valid for DataHub's own source (checked in a process of its own: importing that
    # source loads datahub.sdk, whose module __getattr__ trips skops when a later test logs a model)
    own = subprocess.run([sys.executable, "-c", "import json, sys\n"
                          "from datahub.ingestion.source.mlflow import MLflowConfig\n"
                          "MLflowConfig.model_validate(json.loads(sys.argv[1]))", json.dumps(config)],
                         capture_output=True, text=True, timeout=120, env={**os.environ, **QUIET_ENV})
    assert own.returncode == 0 or "ModuleNotFoundError" in own.stderr, own.stderr[-2000:]
    with CatalogServer() as gms:
        sink = {"type": "datahub-rest", "config": {"server": gms.url}}
        proc, report, _ = datahub_ingest(tmp_path, "datahub-recipe", config, sink, pipeline="dh-own-recipe")
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
        assert report.get("checkpoint_pending") and report["failures"] == []
        urns = {r["entityUrn"] for r in gms.received}
        # model_name_separator and env
        assert "urn:li:mlModel:(urn:li:dataPlatform:mlflow,churn_model-1,DEV)" in urns
        assert not any(",PROD)" in u for u in urns)
        # base_external_url
        props = gms.store[("urn:li:mlModel:(urn:li:dataPlatform:mlflow,churn_model-1,DEV)", "mlModelProperties")]
        assert props["externalUrl"].startswith("https://mlflow.example.com/#/models/churn_model/versions/1")
        # source_mapping_to_platform: the s3 input's upstream is on glue, the gs one keeps DataHub's gcs
        lineage = [r["aspect"] for r in gms.received if r["aspectName"] == "upstreamLineage"]
        upstreams = {u["dataset"] for a in lineage for u in a["upstreams"]}
        assert "urn:li:dataset:(urn:li:dataPlatform:glue,ml-data/churn/train.parquet,DEV)" in upstreams
        assert "urn:li:dataset:(urn:li:dataPlatform:gcs,ml-data/churn/eval.parquet,DEV)" in upstreams

        # stateful_ingestion: the next run confirms the checkpoint and keeps it in GMS
        proc, report, _ = datahub_ingest(tmp_path, "datahub-recipe", config, sink, pipeline="dh-own-recipe")
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
        confirmed = report.get("checkpoint_confirmed")
        assert confirmed and any(r["aspectName"] == "datahubIngestionCheckpoint" for r in gms.received)


def test_datahub_mlflow_keys_without_an_equivalent_are_refused_with_one(tmp_path):
    file_sink = {"type": "file", "config": {"filename": str(tmp_path / "out.json")}}
    cases = {
        "materialize": ({"materialize_dataset_inputs": True},
                        "source.config: materialize_dataset_inputs: true is not supported: each run input is linked"),
        "both": ({"source_mapping_to_platform": {"s3": "glue"}, "dataset_platform_mapping": {"s3": "s3"}},
                 "source_mapping_to_platform is DataHub's name for dataset_platform_mapping"),
        "no-gms": ({"stateful_ingestion": {"enabled": True}},
                   "source.config.stateful_ingestion: DataHub keeps this checkpoint in GMS, and the recipe reaches "
                   "none (no datahub-rest sink, no datahub_api); use source.config.state"),
        "old-state": ({"stateful_ingestion": {"enabled": True, "ignore_old_state": True}},
                      "source.config.stateful_ingestion.ignore_old_state: not supported"),
    }
    for name, (keys, message) in cases.items():
        proc, _, _ = datahub_ingest(tmp_path, name, {"tracking_uri": "http://127.0.0.1:9", **keys}, file_sink)
        assert proc.returncode == 1 and message in proc.stderr, (name, proc.stderr[-2000:])
    # DataHub's AllowDenyPattern spelling, ignoreCase included; a disabled stateful_ingestion is no state
    proc, _, _ = datahub_ingest(tmp_path, "pattern", {
        "tracking_uri": "http://127.0.0.1:9", "max_retries": 0, "stateful_ingestion": {"enabled": False},
        "model_pattern": {"allow": ["CHURN"], "deny": [], "ignoreCase": True}}, file_sink)
    assert "ignoreCase" not in proc.stderr and "Extra inputs" not in proc.stderr
    assert "127.0.0.1:9" in proc.stdout + proc.stderr  # it got as far as trying the server


# -- state: incremental runs, and the checkpoint only after delivery ------------------------------

@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """A server of its own: these tests change MLflow between runs."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-dh-state")) as url:
        yield url


def saved_checkpoint(state_file: Path, pipeline: str):
    if not state_file.exists():
        return None
    return json.loads(state_file.read_text())["pipelines"].get(pipeline, {}).get("checkpoint") or None


def test_incremental_second_run_through_datahub_sends_only_the_changes(own_server, tmp_path):
    """The file sink writes in close(), after DataHub's commit step: the checkpoint stays pending
    until the next run has read this run's records back from the file."""
    from mlflow import MlflowClient

    client = MlflowClient(own_server)
    exp = client.create_experiment("dh-incremental")
    r1, r2 = new_run(client, exp, "r1"), new_run(client, exp, "r2")
    client.create_registered_model("dh_model")
    client.create_model_version("dh_model", f"runs:/{r1}/m", run_id=r1)
    client.set_registered_model_alias("dh_model", "champion", "1")
    state_file = tmp_path / "state.json"
    config = {"tracking_uri": own_server, "incremental": True, "state": {"path": str(state_file)}}

    def ingest(name):
        proc, report, _ = datahub_ingest(tmp_path, name, config,
                                         {"type": "file", "config": {"filename": str(tmp_path / f"{name}.json")}})
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
        return {r["entityUrn"] for r in json.loads((tmp_path / f"{name}.json").read_text())}, report

    first, report = ingest("first")
    assert report["mode"] == "full" and {run_urn(r1), run_urn(r2), model_urn("dh_model", 1)} <= first
    pending = report.get("checkpoint_pending")
    assert pending and report.get("checkpoint_saved") is None and saved_checkpoint(state_file, "dh-plugin") is None

    r3 = new_run(client, exp, "r3")
    client.create_model_version("dh_model", f"runs:/{r3}/m", run_id=r3)
    client.set_registered_model_alias("dh_model", "champion", "2")
    second, report = ingest("second")
    # the first run's records are in its file: its checkpoint is saved, and this run starts from it
    assert report.get("checkpoint_confirmed") == pending == saved_checkpoint(state_file, "dh-plugin")
    assert report["mode"] == "incremental" and report.get("checkpoint_before") == pending
    # the new run, the new version, the version the alias left, their group; nothing else
    assert second == {run_urn(r3), model_urn("dh_model", 1), model_urn("dh_model", 2), group_urn("dh_model")}

    third, report = ingest("third")
    assert third == set() and report["proposals"] == 0 and report["warnings"] == []
    assert saved_checkpoint(state_file, "dh-plugin") == report.get("checkpoint_before")


@pytest.fixture
def full_disk(tmp_path):
    """A full 64 KiB tmpfs: DataHub's file sink cannot write a run's records there."""
    mount = tmp_path / "full"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs (needs root): {done.stderr.strip()}")
    try:
        with open(mount / "filler", "wb", buffering=0) as filler:  # every byte taken: not even a small run fits
            try:
                while True:
                    filler.write(b"\0" * 4096)
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_file_sink_on_a_full_disk_never_moves_the_checkpoint(own_server, tmp_path, full_disk):
    """The regression: the checkpoint was saved while the file sink still held the records; the file
    ended up empty and the next incremental run sent nothing. Now the next run finds the file
    without this run's records, drops its checkpoint and sends the changes again."""
    from mlflow import MlflowClient

    client = MlflowClient(own_server)
    exp = client.create_experiment("dh-full-disk")
    new_run(client, exp, "before")
    state_file = tmp_path / "state.json"
    config = {"tracking_uri": own_server, "incremental": True, "state": {"path": str(state_file)}}

    def ingest(name, folder):
        return datahub_ingest(tmp_path, name, config, {"type": "file", "config": {"filename": str(folder / "out.json")}},
                              pipeline="dh-full")

    roomy = tmp_path / "roomy"
    proc, report, _ = ingest("baseline", roomy)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    baseline = report.get("checkpoint_pending")

    lost = new_run(client, exp, "lost-on-full-disk")
    proc, report, _ = ingest("full", full_disk)
    assert proc.returncode != 0  # DataHub's file sink fails in close(): No space left on device
    assert "No space left on device" in proc.stdout + proc.stderr
    assert report is None or report.get("checkpoint_saved") is None
    # the baseline was confirmed by this run; the full-disk run's own checkpoint is only pending
    assert saved_checkpoint(state_file, "dh-full") == baseline
    written = full_disk / "out.json"
    assert not written.exists() or run_urn(lost) not in written.read_text()

    proc, report, _ = ingest("after", roomy)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert report.get("checkpoint_before") == baseline and report.get("checkpoint_confirmed") is None
    assert any("is not confirmed as delivered" in str(w.get("context")) for w in report["warnings"]), report["warnings"]
    sent = {r["entityUrn"] for r in json.loads((roomy / "out.json").read_text())}
    assert run_urn(lost) in sent  # the run the full disk lost is sent again

    proc, report, _ = ingest("confirm", roomy)
    assert proc.returncode == 0 and report.get("checkpoint_confirmed") == saved_checkpoint(state_file, "dh-full")
    assert report["proposals"] == 0


@pytest.mark.parametrize("mode", ["ASYNC_BATCH", "SYNC"])
def test_rest_sink_checkpoint_only_once_gms_holds_the_run(own_server, tmp_path, mode):
    """DataHub's REST sink has no flush(): a batch GMS refuses may be reported after the commit step
    (ASYNC_BATCH), or never (SYNC). The checkpoint stays pending until the next run reads every
    aspect back from GMS; a refused one drops it and the changes are sent again."""
    from mlflow import MlflowClient

    client = MlflowClient(own_server)
    exp = client.create_experiment(f"dh-rest-{mode}")
    refused_run = new_run(client, exp, "refused")
    state_file = tmp_path / "state.json"
    config = {"tracking_uri": own_server, "incremental": True, "state": {"path": str(state_file)}}
    pipeline = f"dh-rest-{mode}"
    with CatalogServer() as gms:
        gms.reject = lambda r: "refused" if r["entityUrn"] == run_urn(refused_run) else None
        sink = {"type": "datahub-rest", "config": {"server": gms.url, "mode": mode}}
        proc, report, sink_report = datahub_ingest(tmp_path, "refused", config, sink, pipeline=pipeline)
        if mode == "ASYNC_BATCH":
            assert proc.returncode == 1 and sink_report["failures"]
        assert (run_urn(refused_run), "dataProcessInstanceProperties") not in gms.store
        assert saved_checkpoint(state_file, pipeline) is None

        gms.reject = lambda r: None
        proc, report, _ = datahub_ingest(tmp_path, "delivered", config, sink, pipeline=pipeline)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
        assert report.get("checkpoint_confirmed") is None and saved_checkpoint(state_file, pipeline) is None
        assert (run_urn(refused_run), "dataProcessInstanceProperties") in gms.store  # sent again
        pending = report.get("checkpoint_pending")
        assert pending and gms.problems == []

        proc, report, _ = datahub_ingest(tmp_path, "confirmed", config, sink, pipeline=pipeline)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
        assert report.get("checkpoint_confirmed") == pending == saved_checkpoint(state_file, pipeline)
        assert report["mode"] == "incremental" and report["proposals"] == 0


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
