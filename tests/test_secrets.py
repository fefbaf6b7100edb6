"""No secret from a recipe or the environment in anything the connector prints or writes,
whatever characters it holds, on success and failure paths (real MLflow basic-auth server,
test catalog server)."""
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
import requests

from connector.config.recipe import parse_recipe
from connector.secrets import Redactor, redact_url, url_credentials
from tests.catalog_server import CatalogServer
from tests.cli_in_process import run_cli
from tests.conftest import ADMIN, PASSWORD
from tests.expectations import exp_urn

CLI = [sys.executable, "-m", "connector.cli"]
READER = "reader"
READER_PW = "Rd/pw#7?x@y:z"         # every character that breaks a naive URL parse
READER_PW_PCT = "Rd%2Fpw%237%3Fx%40y%3Az"
GMS_TOKEN = "gms-tok/en#with?odd@chars-991"
ENV_SECRET = "env-only-secret-4711"
QUOTED_TOKEN = 'tok"quoted\\x'   # JSON escapes it


@pytest.mark.parametrize("url, shown, credentials", [
    ("http://u:p/a?s#s@host:5000/x", "http://host:5000/x", ("u", "p/a?s#s")),
    ("http://u:p@ss@host:5000", "http://host:5000", ("u", "p@ss")),
    ("https://u:p%2Fw%40x@host/api", "https://host/api", ("u", "p/w@x")),
    ("http://u:p@h/x@host", "http://host", ("u", "p@h/x")),   # doubtful: loses too much, never too little
    ("postgresql://ml:pw@db:5432/mlflow", "postgresql://db:5432/mlflow", ("ml", "pw")),
    ("http://host:5000/api", "http://host:5000/api", None),
    ("sqlite:///data/x@y.db", "sqlite:///data/x@y.db", None),
    ("http://[::1]:8080/x", "http://[::1]:8080/x", None),
])
def test_redact_url_and_credentials(url, shown, credentials):
    assert redact_url(url) == shown
    assert url_credentials(url) == credentials


def test_redactor_masks_every_spelling_of_a_secret():
    redactor = Redactor.from_recipe(parse_recipe({
        "source": {"type": "mlflow", "config": {"tracking_uri": f"http://{READER}:{READER_PW_PCT}@mlflow:5000",
                                                "token": QUOTED_TOKEN}},
        "sink": {"type": "datahub-rest", "config": {"server": "http://gms:8080", "token": GMS_TOKEN,
                                                    "extra_headers": {"X-Api-Key": "hdr-secret-1"}}}}),
        environ={"MLFLOW_TRACKING_PASSWORD": ENV_SECRET, "UNRELATED": "not-secret-at-all"})
    text = (f"{READER_PW} {READER_PW_PCT} {quote(GMS_TOKEN, safe='')} {json.dumps(QUOTED_TOKEN)} hdr-secret-1 "
            f"{ENV_SECRET} not-secret-at-all http://{READER}:{READER_PW}@mlflow:5000/api")
    redacted = redactor.redact(text)
    assert redacted == '*** *** *** "***" *** *** not-secret-at-all http://mlflow:5000/api'


def _create_reader(url: str) -> None:
    answer = requests.post(f"{url}/api/2.0/mlflow/users/create", json={"username": READER, "password": READER_PW},
                           auth=(ADMIN, PASSWORD), timeout=30)
    assert answer.status_code == 200 or "already exists" in answer.text, answer.text


def _outputs(tmp_path: Path, proc) -> dict[str, str]:
    files = {p.name: p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()
             and p.suffix in (".json", ".jsonl", ".lock", ".txt")}
    return {"stdout": proc.stdout, "stderr": proc.stderr, **files}


def _assert_no_secret(outputs: dict[str, str], secrets) -> None:
    for name, text in outputs.items():
        for secret in secrets:
            assert secret not in text, f"{secret!r} in {name}"


def _ingest(tmp_path, recipe: dict, env: dict, *args, command="ingest"):
    path = tmp_path / "recipe.yml"
    path.write_text(json.dumps(recipe))
    report = ["--report-file", str(tmp_path / "report.json")] if command == "ingest" else []
    return subprocess.run(CLI + [command, "-c", str(path), *report, *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env}, cwd=tmp_path)


SECRETS = (READER_PW, READER_PW_PCT, GMS_TOKEN, quote(GMS_TOKEN, safe=""), ENV_SECRET, PASSWORD)


@pytest.mark.server
@pytest.mark.parametrize("spelled", ["percent-encoded", "as typed"])
def test_credentials_in_the_tracking_uri_work_and_never_show(auth_server, tmp_path, spelled):
    _create_reader(auth_server)
    password = READER_PW_PCT if spelled == "percent-encoded" else READER_PW.replace(":", "%3A")
    tracking = auth_server.replace("http://", f"http://{READER}:{password}@")
    recipe = {"pipeline_name": "secrets", "source": {"type": "mlflow", "config": {"tracking_uri": "${TRACKING}"}},
              "sink": {"type": "file", "config": {"filename": str(tmp_path / "out.json")}},
              "state": {"path": str(tmp_path / "state.json")}}
    env = {"TRACKING": tracking, "AWS_SECRET_ACCESS_KEY": ENV_SECRET}
    proc = _ingest(tmp_path, recipe, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert exp_urn("secured-exp") in {r["entityUrn"] for r in json.loads((tmp_path / "out.json").read_text())}
    assert json.loads((tmp_path / "report.json").read_text())["source"] == auth_server
    check = _ingest(tmp_path, recipe, env, command="check")
    assert check.returncode == 0 and f"[ok] tracking server: {auth_server} answers" in check.stdout
    outputs = {**_outputs(tmp_path, proc), "check stdout": check.stdout, "check stderr": check.stderr}
    assert "state.json" in outputs and "out.json" in outputs
    _assert_no_secret(outputs, SECRETS + (password,))


@pytest.mark.server
def test_rejected_credentials_and_a_failing_catalog_never_show_a_secret(auth_server, tmp_path):
    """Wrong MLflow password (from the environment), then a catalog that rejects a proposal
    and a wrong GMS token: the failure paths, with report, dead letters and their reasons."""
    recipe = {"source": {"type": "mlflow", "config": {"tracking_uri": auth_server, "username": READER}},
              "sink": {"type": "file", "config": {"filename": str(tmp_path / "out.json")}}}
    wrong = "Wr0ng/pw#?@-" + READER_PW
    proc = _ingest(tmp_path, recipe, {"MLFLOW_TRACKING_PASSWORD": wrong})
    check = _ingest(tmp_path, recipe, {"MLFLOW_TRACKING_PASSWORD": wrong}, command="check")
    assert proc.returncode == 1 and "rejected the credentials (HTTP 401)" in proc.stderr
    assert check.returncode == 1 and "rejected the credentials" in check.stdout
    _assert_no_secret({**_outputs(tmp_path, proc), "check": check.stdout + check.stderr}, SECRETS + (wrong,))

    _create_reader(auth_server)
    with CatalogServer(token=GMS_TOKEN) as catalog:
        catalog.reject = lambda record: ("aspect refused by policy" if record["aspectName"] == "containerProperties"
                                         else None)
        gms = catalog.url.replace("http://", f"http://gmsuser:{quote(READER_PW, safe='')}@")
        recipe = {"pipeline_name": "p", "source": {"type": "mlflow", "config": {
            "tracking_uri": auth_server, "username": READER, "password": "${MLFLOW_PW}"}},
            "sink": {"type": "datahub-rest", "config": {
                "server": gms, "token": "${GMS_TOKEN}", "dead_letter_file": str(tmp_path / "dead.json"),
                "retry_backoff_sec": 0.01, "max_retries": 1}},
            "state": {"path": str(tmp_path / "state.json")}}
        env = {"MLFLOW_PW": READER_PW, "GMS_TOKEN": GMS_TOKEN, "DATAHUB_GMS_TOKEN": ENV_SECRET}
        rejected = _ingest(tmp_path, recipe, env)
        env["GMS_TOKEN"] = "wrong-" + GMS_TOKEN
        refused = _ingest(tmp_path, recipe, env)
    assert rejected.returncode == 1 and "aspect refused by policy" in rejected.stdout
    assert refused.returncode == 1 and f"token rejected by {catalog.url}" in refused.stderr
    reasons = (tmp_path / "dead.json.reasons.jsonl").read_text()
    # a proposal dead-lettered again is in the file once, with its latest reason
    assert "token rejected" in reasons
    outputs = {**_outputs(tmp_path, rejected), "refused stdout": refused.stdout, "refused stderr": refused.stderr}
    assert {"dead.json", "dead.json.reasons.jsonl", "report.json"} <= set(outputs)
    _assert_no_secret(outputs, SECRETS + ("wrong-" + GMS_TOKEN,))


def test_a_variable_feeding_a_value_the_catalog_shows_is_warned_about(tmp_path, write_recipe):
    recipe = write_recipe("pipeline_name: ${PIPE}\nsource: {type: mlflow, config: {tracking_uri: http://127.0.0.1:9,"
                          " base_external_url: '${UI}', max_retries: 0}}\n"
                          f"sink: {{type: file, config: {{filename: {tmp_path / 'out.json'}}}}}\n")
    env = {"PIPE": "nightly", "UI": "https://mlflow.example.com"}
    for command in (["check"], ["ingest", "--report-file", str(tmp_path / "report.json")]):
        proc = run_cli(*command, "-c", recipe, env=env)
        assert "pipeline_name comes from ${PIPE}; its value is written into every proposal's " \
               "systemMetadata.runId in the catalog (never put a secret there)" in proc.stdout
        assert "source.config.base_external_url comes from ${UI}" in proc.stdout
    warnings = json.loads((tmp_path / "report.json").read_text())["warnings"]
    assert [w["title"] for w in warnings].count("Recipe") == 2


@pytest.mark.parametrize("field, value", [("sink", "admin:s3cret-pw-9@gms:8080"),
                                          ("source", "admin:s3cret-pw-9@mlflow:5000")])
def test_a_password_in_a_url_without_a_scheme_is_never_shown(field, value):
    from connector.config.recipe import RecipeError, parse_recipe
    from connector.secrets import redact_url

    recipe = {"source": {"type": "mlflow", "config": {"tracking_uri": "http://mlflow:5000"}},
              "sink": {"type": "datahub-rest", "config": {"server": "http://gms:8080"}}}
    if field == "sink":
        recipe["sink"]["config"]["server"] = value
    else:
        recipe["source"]["config"]["tracking_uri"] = value
    with pytest.raises(RecipeError) as refused:
        parse_recipe(recipe)
    assert "s3cret-pw-9" not in str(refused.value) and "has no scheme" in str(refused.value)
    assert redact_url(value) == value.split("@")[1]
    assert redact_url("/data/a@b:1/mlflow.db") == "/data/a@b:1/mlflow.db"  # a path is no URL


@pytest.mark.server
def test_passwords_in_urls_mlflow_holds_never_reach_the_catalog(tmp_path):
    """An FTP artifact store, a dataset read over https with a password, a version from sftp:
    MLflow keeps those URLs as given; the catalog gets them without their user:password@ part."""
    import subprocess
    import sys

    from tests.mlflow_server import mlflow_server

    seed = (
        "import sys, mlflow, pandas as pd\n"
        "from mlflow import MlflowClient\n"
        "url = sys.argv[1]; mlflow.set_tracking_uri(url); client = MlflowClient(url)\n"
        "exp = client.create_experiment('creds', artifact_location='ftp://alice:ftpSecret99@127.0.0.1/artifacts')\n"
        "run = client.create_run(exp)\n"
        "data = mlflow.data.from_pandas(pd.DataFrame({'a': [1]}), name='train',\n"
        "                               source='https://bob:dsSecret77@data.example.com/train.csv')\n"
        "client.log_inputs(run.info.run_id, [mlflow.entities.DatasetInput(data._to_mlflow_entity())])\n"
        "client.set_terminated(run.info.run_id)\n"
        "client.create_registered_model('m')\n"
        "client.create_model_version('m', 'sftp://carol:verSecret55@host/models/m1', run_id=run.info.run_id)\n")
    allowed = {"MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES": "ftp,sftp"}  # as an FTP-backed server sets it
    with mlflow_server(tmp_path / "mlflow", env=allowed) as url:
        done = subprocess.run([sys.executable, "-c", seed, url], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        recipe = tmp_path / "r.yml"
        recipe.write_text(f"source: {{type: mlflow, config: {{tracking_uri: '{url}'}}}}\n"
                          f"sink: {{type: file, config: {{filename: '{tmp_path / 'out.json'}'}}}}\n")
        proc = subprocess.run([sys.executable, "-m", "connector.cli", "ingest", "-c", str(recipe)],
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = (tmp_path / "out.json").read_text()
    for secret in ("ftpSecret99", "dsSecret77", "verSecret55", "alice", "carol"):
        assert secret not in out and secret not in proc.stdout + proc.stderr
    assert "ftp://127.0.0.1/artifacts" in out and "sftp://host/models/m1" in out
    assert "https://data.example.com/train.csv" in out
