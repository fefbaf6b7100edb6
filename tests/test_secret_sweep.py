"""No secret in any report, wherever it goes, when a hostile server echoes back what it was sent
(tests/hostile_servers.py in front of the real MLflow server); redirects never carry the token or
extra headers to another server, and another server's answer never counts as delivered."""
import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from connector.http import HttpClient, HttpSettings, RetryPolicy, same_origin
from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from connector.report import Report
from connector.secrets import Redactor
from tests.catalog_server import CatalogServer
from tests.hostile_servers import EchoProxy, Redirector
from tests.mlflow_server import QUIET_ENV
from tests.waiting import wait_for

CLI = [sys.executable, "-m", "connector.cli"]
BIN = Path(sys.executable).parent
ML_USER, ML_PASSWORD = "mluser", "ml/pw#9?x@y-Secret"   # in the tracking URI, from the environment
GMS_TOKEN = "gms-token-sweep-5521"
HEADER_SECRET = "x-api-key-sweep-8813"
ENV_SECRET = "env-databricks-sweep-3307"


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


SECRETS = (ML_PASSWORD, quote(ML_PASSWORD, safe=""), _basic(ML_USER, ML_PASSWORD), GMS_TOKEN, HEADER_SECRET,
           ENV_SECRET)


def _assert_clean(texts: dict) -> None:
    for name, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} in {name}"


def _env(proxy_url: str) -> dict:
    return {"TRACKING": proxy_url.replace("http://", f"http://{ML_USER}:{quote(ML_PASSWORD, safe='')}@"),
            "GMS_TOKEN": GMS_TOKEN, "API_KEY": HEADER_SECRET, "DATABRICKS_TOKEN": ENV_SECRET}


def test_the_report_object_is_redacted_as_it_is_built():
    redactor = Redactor.from_recipe({"source": {"config": {"tracking_uri": f"http://u:{ML_PASSWORD}@h",
                                                           "username": "ann", "password": "pw-field-77"}},
                                     "sink": {"config": {"token": GMS_TOKEN,
                                                         "extra_headers": {"X-Api-Key": HEADER_SECRET}}}},
                                    environ={"DATABRICKS_TOKEN": ENV_SECRET})
    report = Report(redactor=redactor, source=f"http://u:{ML_PASSWORD}@mlflow:5000")
    echoed = f"server said: {GMS_TOKEN} {quote(ML_PASSWORD, safe='')} Basic {_basic('ann', 'pw-field-77')} " \
             f"{HEADER_SECRET} {ENV_SECRET} http://u:{ML_PASSWORD}@mlflow:5000/api"
    report.failure("MlflowApiError", echoed)
    report.warning(f"title {GMS_TOKEN}", echoed)
    report.info("Sink", echoed)
    assert report.failures[0]["message"] == "server said: *** *** Basic *** *** *** http://mlflow:5000/api"
    assert report.warnings[0]["title"] == "title ***"
    texts = {"failures": json.dumps(report.failures), "as_dict": json.dumps(report.as_dict())}
    _assert_clean(texts)
    assert "pw-field-77" not in texts["as_dict"] and report.as_dict()["source"] == "http://mlflow:5000"


@pytest.mark.server
def test_an_echoing_mlflow_leaves_no_secret_in_the_report_object_the_cli_or_the_catalog(
        seeded_server, tmp_path, monkeypatch):
    """MLflow (behind a proxy that echoes every header of registered-model requests back in an error)
    with basic credentials in the tracking URI; GMS with a token and an extra header."""
    url, _, _ = seeded_server
    with EchoProxy(url, echo="registered-models") as proxy, CatalogServer(token=GMS_TOKEN) as gms:
        env = _env(proxy.url)
        recipe = {"pipeline_name": "sweep", "source": {"type": "mlflow", "config": {"tracking_uri": "${TRACKING}"}},
                  "sink": {"type": "datahub-rest", "config": {
                      "server": gms.url, "token": "${GMS_TOKEN}", "extra_headers": {"X-Api-Key": "${API_KEY}"},
                      "dead_letter_file": str(tmp_path / "dead.json")}}}
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        report = run_ingest(parse_recipe(recipe))
        (tmp_path / "recipe.yml").write_text(json.dumps(recipe))
        proc = subprocess.run(CLI + ["ingest", "-c", str(tmp_path / "recipe.yml"), "--report-file",
                                     str(tmp_path / "report.json")], capture_output=True, text=True, timeout=300,
                              env={**os.environ, **QUIET_ENV}, cwd=tmp_path)
    # the hostile server did echo the credentials it was sent, and the run failed on it
    echoed = [r for r in proxy.requests if "registered-models" in r["path"]]
    assert echoed and echoed[0]["headers"]["Authorization"] == f"Basic {_basic(ML_USER, ML_PASSWORD)}"
    assert not report.ok and proc.returncode == 1
    assert any("cannot serve what you sent" in f["message"] and "Basic ***" in f["message"]
               for f in report.failures), report.failures
    assert "cannot serve what you sent" in proc.stdout
    assert all(r["headers"].get("X-Api-Key") == HEADER_SECRET for r in gms.requests)
    texts = {"report object": json.dumps(report.as_dict()), "failures": repr(report.failures),
             "stdout": proc.stdout, "stderr": proc.stderr, "report file": (tmp_path / "report.json").read_text(),
             "gms bodies": "".join(r.get("body", b"").decode() for r in gms.requests)}
    texts.update({p.name: p.read_text() for p in tmp_path.glob("dead.json*")})
    _assert_clean(texts)


@pytest.mark.server
def test_a_redirect_to_another_port_gets_no_token_or_header_and_counts_nothing_delivered(seeded_server, tmp_path):
    url, _, _ = seeded_server
    with CatalogServer(token=GMS_TOKEN) as gms, Redirector(gms.url, status=307) as redirector:
        report = run_ingest(parse_recipe({
            "source": {"type": "mlflow", "config": {"tracking_uri": url}},
            "sink": {"type": "datahub-rest", "config": {
                "server": redirector.url, "token": GMS_TOKEN, "extra_headers": {"X-Api-Key": HEADER_SECRET},
                "dead_letter_file": str(tmp_path / "dead.json"), "max_retries": 0}}}))
    assert redirector.requests and redirector.requests[0]["headers"]["X-Api-Key"] == HEADER_SECRET
    assert gms.requests == [] and gms.received == []  # the other host:port got nothing, headers or proposals
    assert report.delivered == 0 and report.dead_lettered == report.proposals > 0
    assert any("answered HTTP 307" in f["message"] for f in report.failures), report.failures
    assert len(json.loads((tmp_path / "dead.json").read_text())) == report.proposals


@pytest.mark.server
def test_an_mlflow_redirect_to_another_server_is_not_followed(seeded_server):
    url, _, _ = seeded_server
    with EchoProxy(url) as target, Redirector(target.url, status=302) as redirector:
        report = run_ingest(parse_recipe({
            "source": {"type": "mlflow", "config": {"tracking_uri": redirector.url, "token": GMS_TOKEN}},
            "sink": {"type": "file", "config": {"filename": os.devnull}}}))
    assert target.requests == [] and redirector.requests[0]["headers"]["Authorization"] == f"Bearer {GMS_TOKEN}"
    [failure] = report.failures
    assert failure["message"] == (
        f"MLflow at {redirector.url} redirected experiments/search to {target.url}/api/2.0/mlflow/experiments/search "
        "(another server, or https to http): not followed, so that credentials stay with the server they are for; "
        "put the address that answers in the recipe")


def test_a_redirect_within_the_same_server_is_followed_with_its_headers():
    with Redirector(None, status=308) as server:
        client = HttpClient(server.url, HttpSettings(retry=RetryPolicy(max_retries=0)), token=GMS_TOKEN,
                            headers={"X-Api-Key": HEADER_SECRET})
        answer = client.request("POST", "/aspects?action=ingestProposal", json_body={"x": 1})
        client.close()
    assert answer.status == 200
    assert [r["path"] for r in server.requests] == ["/aspects?action=ingestProposal",
                                                    "/moved/aspects?action=ingestProposal"]
    assert answer.json()["headers"]["X-Api-Key"] == HEADER_SECRET
    assert answer.json()["headers"]["Authorization"] == f"Bearer {GMS_TOKEN}"


@pytest.mark.parametrize("url, target, followed", [
    ("http://gms:8080/a", "http://gms:8080/b", True),
    ("http://gms/a", "https://gms/a", True),              # an upgrade to TLS on the same host
    ("https://gms/a", "http://gms/a", False),             # never from https to http
    ("http://gms:8080/a", "http://gms:8081/a", False),    # another port is another server
    ("http://gms:8080/a", "https://gms:8443/a", False),
    ("http://gms/a", "http://login.example.com/a", False),
    ("http://gms:80/a", "http://GMS/b", True),
])
def test_same_origin(url, target, followed):
    assert same_origin(url, target) is followed


def _datahub_ingest(tmp_path: Path, name: str, recipe: dict, env: dict) -> subprocess.CompletedProcess:
    path = tmp_path / f"{name}.yml"
    path.write_text(json.dumps(recipe))
    (tmp_path / "home").mkdir(exist_ok=True)
    return subprocess.run([str(BIN / "datahub"), "ingest", "-c", str(path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **QUIET_ENV, "HOME": str(tmp_path / "home"), **env})


@pytest.mark.server
def test_datahub_ingest_keeps_secrets_out_of_its_report_and_of_the_run_summary_stored_in_gms(
        seeded_server, tmp_path):
    """`datahub ingest` with the plugin and DataHub's REST sink: the source report it prints, and
    everything the stand-in GMS receives (proposals and DataHub's run summary with the recipe)."""
    url, _, _ = seeded_server
    with EchoProxy(url, echo="registered-models") as proxy, CatalogServer(token=GMS_TOKEN) as gms:
        recipe = {"pipeline_name": "dh-sweep",
                  "source": {"type": "mlflow-catalog", "config": {"tracking_uri": "${TRACKING}"}},
                  "sink": {"type": "datahub-rest", "config": {"server": gms.url, "token": "${GMS_TOKEN}"}}}
        proc = _datahub_ingest(tmp_path, "sweep", recipe, _env(proxy.url))
    assert proc.returncode == 1, (proc.stdout + proc.stderr)[-3000:]
    assert any("registered-models" in r["path"] for r in proxy.requests)
    bodies = "".join(r.get("body", b"").decode() for r in gms.requests)
    assert "cannot serve what you sent" in proc.stdout + proc.stderr
    assert "cannot serve what you sent" in bodies and "${TRACKING}" in bodies  # the run summary and its recipe
    assert gms.received
    _assert_clean({"stdout": proc.stdout, "stderr": proc.stderr, "gms bodies": bodies})

    with CatalogServer(token=GMS_TOKEN) as gms:
        written = {**recipe, "source": {"type": "mlflow-catalog", "config": {
            "tracking_uri": _env(url)["TRACKING"]}},  # the password written into the recipe itself
                   "sink": {"type": "datahub-rest", "config": {"server": gms.url, "token": "${GMS_TOKEN}"}}}
        proc = _datahub_ingest(tmp_path, "written", written, {"GMS_TOKEN": GMS_TOKEN})
    assert proc.returncode == 1 and (
        "source.config.tracking_uri: refused: the URL holds a password (user:password@), which DataHub stores "
        f"unmasked with each run's recipe; give {url} without credentials and put them in "
        "source.config.username and source.config.password") in proc.stdout + proc.stderr, proc.stderr[-3000:]
    _assert_clean({"stdout": proc.stdout, "stderr": proc.stderr})
    # DataHub records the recipe as written before any source starts: the refused run's record
    # holds the password written into the URL (docs/datahub-ingest.md: "Secrets"); nothing else does
    holding = {r["aspectName"] for r in gms.received if quote(ML_PASSWORD, safe="") in json.dumps(r)}
    assert holding <= {"dataHubIngestionSourceInfo", "dataHubExecutionRequestInput"}
    assert not any(r["entityType"] not in ("dataHubIngestionSource", "dataHubExecutionRequest")
                   for r in gms.received)


def test_a_stopped_rest_sink_joins_its_threads_within_the_stop_grace(tmp_path):
    """A stop while GMS holds every answer: the sink dead-letters what is unsettled and its sending
    threads end within seconds (they do not sit out the attempt's deadline); nothing lost."""
    import threading
    import time

    from connector.mapping.common import Mcp
    from connector.config.settings import build_sink
    from connector.stopping import StopToken

    stop = StopToken()
    with CatalogServer() as gms:
        gms.stall_first, gms.stall_seconds = 10**6, 60.0
        sink = build_sink(parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": "http://x"}},
                                        "sink": {"type": "datahub-rest", "config": {
                                            "server": gms.url, "max_batch_size": 2, "max_in_flight": 2,
                                            "dead_letter_file": str(tmp_path / "dead.json")}}}).sink, stop=stop)
        for n in range(4):
            sink.write(Mcp(f"urn:li:corpuser:u{n}", "status", {"removed": False}), {"runId": "r"})
        # the first batch is on the wire (GMS holds it a minute), the second waits in the sink
        wait_for(lambda: any(r["method"] == "POST" for r in gms.requests), what="the first batch on the wire")
        stop.request("test")
        started = time.monotonic()
        result = sink.abort()
        took = time.monotonic() - started
    assert took < 10, took
    assert not [t for t in threading.enumerate() if t.name.startswith("gms-send")]
    assert result.delivered == 0 and result.failed == 4
    assert len(json.loads((tmp_path / "dead.json").read_text())) == 4
