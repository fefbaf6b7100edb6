"""Bad recipes and files through the real CLI: exit 2 with a message naming what is wrong,
no traceback, nothing created or half-written. Bad state and bad MLflow data: exit 1, named."""
import json
import sqlite3
import time

import pytest
from click.testing import CliRunner

from connector.cli import main
from tests.fake_http import ScriptedServer

GOOD_SINK = "sink: {type: file, config: {filename: out.json}}\n"


def _alias_bomb() -> str:
    lines = ['l0: &l0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 12)]  # 9**12 values
    return "\n".join(lines) + "\nsource: {type: mlflow, config: {tracking_uri: http://x}}\n" + GOOD_SINK


def _recipe(tracking_uri: str) -> str:
    return f"source: {{type: mlflow, config: {{tracking_uri: {json.dumps(tracking_uri)}}}}}\n" + GOOD_SINK


# (case id, recipe text or bytes, environment, expected exit code, fragments the error must hold)
RECIPES = [
    ("binary", b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", {}, 2, ["recipe.yml is not UTF-8 text", "offset"]),
    ("latin-1", "source: {type: mlflow, config: {tracking_uri: http://h\xe9}}\n".encode("latin-1"), {}, 2,
     ["not UTF-8 text (byte 0xe9"]),
    ("nul bytes", b"source:\x00 x\n", {}, 2, ["holds NUL bytes"]),
    ("deep nesting", "a: " + "[" * 5000 + "]" * 5000 + "\n", {}, 2, ["nests deeper than 50 levels", "line 1"]),
    ("alias bomb", _alias_bomb(), {}, 2, ["aliases expand to more than 100,000 values"]),
    ("recursive alias", "a: &a [*a]\n" + GOOD_SINK, {}, 2, ["an alias refers to a node that contains it"]),
    ("not a mapping", "- just\n- a list\n", {}, 2, ["expected a mapping with 'source' and 'sink'"]),
    ("empty file", "", {}, 2, ["expected a mapping"]),
    ("yaml syntax", 'source: {type: mlflow, config: {password: "unclosed\n', {}, 2,
     ["is not valid YAML", "line 2"]),
    ("invalid port", _recipe("http://mlflow.internal:50x0"), {}, 2,
     ["source.config.tracking_uri", "invalid URL 'http://mlflow.internal:50x0'", "Port could not be cast"]),
    ("port out of range", _recipe("http://mlflow.internal:70000"), {}, 2, ["Port out of range"]),
    ("host:port without scheme", _recipe("mlflow.internal:5000"), {}, 2,
     ["source.config.tracking_uri", "has no scheme: write http://mlflow.internal:5000"]),
    ("host without scheme or port", _recipe("mlflow.internal"), {}, 2,
     ["file store mlflow.internal does not exist", "for a tracking server write http://mlflow.internal"]),
    ("missing tracking_uri", "source: {type: mlflow}\n" + GOOD_SINK, {}, 2,
     ["source.config.tracking_uri: required (or set MLFLOW_TRACKING_URI)"]),
    ("scheme-less env tracking URI", "source: {type: mlflow}\n" + GOOD_SINK, {"MLFLOW_TRACKING_URI": "h:5000"}, 2,
     ["MLFLOW_TRACKING_URI: 'h:5000' has no scheme"]),
    ("sqlite in a missing directory", _recipe("sqlite:///{tmp}/no/such/dir/mlflow.db"), {}, 2,
     ["the MLflow database", "no/such/dir/mlflow.db does not exist (its directory does not exist)",
      "never creates one"]),
    ("sqlite file missing", _recipe("sqlite:///{tmp}/missing.db"), {}, 2, ["missing.db does not exist (no such file)"]),
    ("sqlite not MLflow's", _recipe("sqlite:///{tmp}/other.db"), {}, 2,
     ["other.db is not an MLflow database (it has no experiments table)"]),
    ("in-memory sqlite", _recipe("sqlite://"), {}, 2, ["in-memory database"]),
    ("file store missing", _recipe("file:///{tmp}/no-store"), {}, 2, ["file store", "no-store does not exist"]),
    ("env var value never echoed", "source: {type: mlflow, config: {tracking_uri: http://x, env: '${ENV_SECRET}'}}\n"
     + GOOD_SINK, {"ENV_SECRET": "mltok-abcdef123456"}, 2,
     ["source.config.env: unknown env ${ENV_SECRET}", "(value from ${ENV_SECRET})"]),
    ("gms server without scheme", "source: {type: mlflow, config: {tracking_uri: http://x}}\n"
     "sink: {type: datahub-rest, config: {server: 'gms:8080'}}\n", {}, 2,
     ["sink.config.server", "has no scheme: write http://gms:8080"]),
]


@pytest.fixture
def cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)

    def invoke(*args, env=None):
        result = CliRunner().invoke(main, list(args), env=env or {})
        assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
            result.exception  # no traceback: every error is handled
        return result
    return invoke


@pytest.mark.parametrize("case, content, env, code, fragments", RECIPES, ids=[r[0] for r in RECIPES])
def test_a_bad_recipe_is_refused_alike_by_check_and_ingest(cli, tmp_path, case, content, env, code, fragments):
    with sqlite3.connect(tmp_path / "other.db") as conn:  # an sqlite file that is not an MLflow store
        conn.execute("CREATE TABLE notes (x)")
    recipe = tmp_path / "recipe.yml"
    if isinstance(content, str):
        content = content.replace("{tmp}", str(tmp_path)).encode()
    recipe.write_bytes(content)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    started = time.monotonic()
    for command in ("check", "ingest"):
        result = cli(command, "-c", str(recipe), env=env)
        assert result.exit_code == code, (command, result.output)
        for fragment in fragments:
            assert fragment in result.output, (command, result.output)
        assert "Traceback" not in result.output
        for value in env.values():
            assert value not in result.output or value == "h:5000"
    assert time.monotonic() - started < 10  # refused quickly (the alias bomb above all)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # no store, no output created


def test_a_bad_state_file_is_named_and_left_as_it_is(cli, tmp_path):
    recipe = tmp_path / "recipe.yml"
    recipe.write_text("pipeline_name: p1\nsource: {type: mlflow, config: {tracking_uri: 'http://127.0.0.1:9'}}\n"
                      f"{GOOD_SINK}state: {{path: {tmp_path / 'state.json'}}}\n")
    state = tmp_path / "state.json"
    for content, fragment in [
        ({"version": 1, "pipelines": {"p1": "a string"}}, "pipeline 'p1': the entry is str, not an object"),
        ({"version": 1, "pipelines": {"p1": ["a", "list"]}}, "the entry is list, not an object"),
        ({"version": 1, "pipelines": {"p1": {"fingerprints": []}}}, "'fingerprints' is list, not dict"),
        ({"version": 1, "pipelines": {"p1": {"checkpoint": "yesterday"}}}, "'checkpoint' is str, not dict"),
        ({"version": 2, "pipelines": {}}, "has version 2; this connector reads version 1 (the file was "
                                          "written by a newer release"),
        ({"pipelines": {}}, "has version None"),
    ]:
        text = json.dumps(content)
        state.write_text(text)
        result = cli("ingest", "-c", str(recipe))
        assert result.exit_code == 1, result.output
        assert f"state file {state}" in result.output and fragment in result.output, result.output
        assert state.read_text() == text and not (tmp_path / "out.json").exists()


GOOD_RECORD = {"entityType": "tag", "entityUrn": "urn:li:tag:mlflow_production", "changeType": "UPSERT",
               "aspectName": "tagProperties", "aspect": {"json": {"name": "mlflow_production"}},
               "systemMetadata": {"lastObserved": 1, "runId": "r"}}

PROPOSAL_FILES = [
    ("NaN in an aspect", json.dumps([GOOD_RECORD])[:-1] + ', {"entityUrn": "urn:li:mlModel:(urn:li:dataPlatform:'
     'mlflow,m_1,PROD)", "aspectName": "mlModelProperties", "aspect": {"json": {"trainingMetrics": [{"name": "l", '
     '"value": NaN}]}}}]', "record 1 (urn:li:mlModel:(urn:li:dataPlatform:mlflow,m_1,PROD) mlModelProperties): "
     "NaN at aspect.trainingMetrics[0].value"),
    ("Infinity in a serialized aspect", json.dumps([{**GOOD_RECORD, "aspect": {
        "value": '{"name": Infinity}', "contentType": "application/json"}}]), "record 0 (urn:li:tag:mlflow_production "
     "tagProperties): Infinity at aspect.name"),
    ("URN not a string", json.dumps([{**GOOD_RECORD, "entityUrn": 42}]), "record 0: entityUrn is int, not a string"),
    ("malformed URN", json.dumps([GOOD_RECORD, {**GOOD_RECORD, "entityUrn": "urn:li:mlModel:(a,b"}]),
     "record 1 (urn:li:mlModel:(a,b tagProperties): entityUrn 'urn:li:mlModel:(a,b' has unbalanced parentheses"),
    ("not a URN", json.dumps([{**GOOD_RECORD, "entityUrn": "tag:x"}]), "entityUrn 'tag:x' is not a URN"),
    ("entity type mismatch", json.dumps([{**GOOD_RECORD, "entityType": "dataset"}]),
     "entityType 'dataset' does not match the URN's type 'tag'"),
    ("aspect missing", json.dumps([{k: v for k, v in GOOD_RECORD.items() if k != "aspect"}]),
     "aspect is missing or not an object"),
    ("record not an object", json.dumps([GOOD_RECORD, "x"]), "record 1: not an object but str"),
    ("not an array", json.dumps(GOOD_RECORD), "expected a JSON array of proposals, found dict"),
    ("not JSON", "[{", "is not JSON: Expecting property name"),
    ("not UTF-8", b"[\xff]", "is not UTF-8 text"),
    ("deep JSON", "[" * 100000 + "]" * 100000, "nests too deeply"),
]


@pytest.mark.parametrize("case, content, fragment", PROPOSAL_FILES, ids=[p[0] for p in PROPOSAL_FILES])
def test_send_refuses_a_bad_proposal_file_naming_the_record(cli, tmp_path, case, content, fragment):
    recipe = tmp_path / "recipe.yml"
    recipe.write_text("source: {type: mlflow}\n" + GOOD_SINK)
    proposals = tmp_path / "proposals.json"
    proposals.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = cli("send", str(proposals), "-c", str(recipe))
    assert result.exit_code == 2, result.output
    assert str(proposals) in result.output and fragment in result.output and "nothing was sent" in result.output \
        or fragment in result.output and result.output.startswith("error: "), result.output
    assert not (tmp_path / "out.json").exists()


def test_send_of_a_good_file_still_works(cli, tmp_path):
    recipe = tmp_path / "recipe.yml"
    recipe.write_text("source: {type: mlflow}\n" + GOOD_SINK)
    (tmp_path / "proposals.json").write_text(json.dumps([GOOD_RECORD]))
    result = cli("send", str(tmp_path / "proposals.json"), "-c", str(recipe))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out.json").read_text())[0]["aspect"] == {"json": {"name": "mlflow_production"}}


def _mlflow_with_a_bad_metric(request):
    path = request["path"]
    if "experiments/search" in path:
        return 200, {"experiments": [{"experiment_id": "1", "name": "exp"}]}, {}
    if "runs/search" in path:
        return 200, {"runs": [
            {"info": {"run_id": "run-with-bad-metric", "experiment_id": "1", "status": "FINISHED"},
             "data": {"metrics": [{"key": "loss", "value": "not-a-number"}, {"key": "auc", "value": 0.9}]}},
            {"info": {"run_id": "good-run", "experiment_id": "1", "status": "FINISHED"},
             "data": {"metrics": [{"key": "auc", "value": "NaN"}]}}]}, {}
    if "registered-models/search" in path:
        return 200, {"registered_models": []}, {}
    if "model-versions/search" in path:
        return 200, {"model_versions": []}, {}
    return 404, {"error_code": "ENDPOINT_NOT_FOUND", "message": "no such endpoint"}, {}


def test_a_non_numeric_metric_fails_its_run_by_id_and_the_rest_is_mapped(cli, tmp_path):
    with ScriptedServer(_mlflow_with_a_bad_metric) as server:
        recipe = tmp_path / "recipe.yml"
        recipe.write_text(_recipe(server.url))
        result = cli("ingest", "-c", str(recipe), "--report-file", str(tmp_path / "report.json"))
    assert result.exit_code == 1, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["failures"] == [{"title": "Mapping failed", "message": "run run-with-bad-metric: ValueError: "
                                   "metric 'loss' has a value that is not a number: 'not-a-number'"}]
    assert report["entities"]["dataProcessInstance"] == 1  # the good run was still mapped
    assert not (tmp_path / "out.json").exists()  # a failed run replaces no output (it would lack a run)
