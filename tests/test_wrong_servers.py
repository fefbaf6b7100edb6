"""Wrong servers (issue 12): answers that are not MLflow's, items without their ids, a huge answer,
and the rate limit over every request, artifact reads included. A real `mlflow server` behind a
fault-injecting proxy (tests/fault_proxy.py)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.unattended_kit import CLI, file_sink, ingest, write_recipe

pytestmark = pytest.mark.server


def test_a_server_answering_ok_to_everything_is_not_an_empty_mlflow(proxy, tmp_path):
    proxy.add("", "wrong_server")
    out = tmp_path / "out.json"
    proc, report, took = ingest(write_recipe(tmp_path, proxy.url, file_sink(out)), tmp_path)
    assert proc.returncode == 1 and took < 15
    message = " ".join(f["message"] for f in report["failures"])
    assert proxy.url in message and "experiments/search" in message and "status" in message
    assert report["proposals"] == 0 and not out.exists()
    check = subprocess.run(CLI + ["check", "-c", str(tmp_path / "recipe.yml")], capture_output=True, text=True,
                           timeout=60)
    assert check.returncode == 1 and "Traceback" not in check.stderr
    api = f"{proxy.url}/api/2.0/mlflow"
    assert f"[FAIL] tracking server: {api}/experiments/search answered {{'status'}}" in check.stdout
    assert f"[FAIL] model registry: {api}/registered-models/search" in check.stdout


def _drop(items_key: str, *path: str):
    def rewrite(answer: dict) -> dict:
        for item in answer.get(items_key, []):
            holder = item
            for key in path[:-1]:
                holder = holder[key]
            holder.pop(path[-1], None)
            if path[-1] == "run_id":
                holder.pop("run_uuid", None)
        return answer
    return rewrite


@pytest.mark.parametrize("endpoint,rewrite,missing", [
    ("experiments/search", _drop("experiments", "experiment_id"), "experiments[0]) without experiment_id"),
    ("runs/search", _drop("runs", "info", "run_id"), "runs[0]) without info.run_id or info.run_uuid"),
    ("registered-models/search", _drop("registered_models", "name"), "registered_models[0]) without name"),
    ("model-versions/search", _drop("model_versions", "version"), "model_versions[0]) without version"),
], ids=["experiment", "run", "registered-model", "model-version"])
def test_an_item_without_its_id_is_an_error_naming_the_endpoint(proxy, tmp_path, endpoint, rewrite, missing):
    out = tmp_path / "out.json"
    proxy.add(endpoint, "rewrite", rewrite=rewrite)
    proc, report, _ = ingest(write_recipe(tmp_path, proxy.url, file_sink(out)), tmp_path)
    assert proc.returncode == 1
    [failure] = report["failures"]
    assert failure["title"] == "MLflow source failed" and "KeyError" not in failure["message"]
    assert f"{proxy.url}/api/2.0/mlflow/{endpoint} answered an item ({missing}" in failure["message"]
    assert not out.exists()


def test_an_empty_answer_is_an_empty_listing_not_a_wrong_server(proxy, tmp_path):
    """MLflow leaves out empty lists: `{}` is a registry without models."""
    out = tmp_path / "out.json"
    proxy.add("registered-models/search", "rewrite", rewrite=lambda answer: {})
    proxy.add("model-versions/search", "rewrite", rewrite=lambda answer: {})
    proc, report, _ = ingest(write_recipe(tmp_path, proxy.url, file_sink(out)), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert report["crawled"].get("registered_models", 0) == 0 and report["crawled"]["runs"] > 0
    assert "mlModelGroup" not in report["entities"] and out.exists()


@pytest.mark.parametrize("declare_length", [False, True], ids=["streamed", "content-length"])
def test_a_huge_answer_is_refused_at_the_cap_without_reading_it_all(proxy, tmp_path, declare_length):
    proxy.add("experiments/search", "huge", megabytes=40, declare_length=declare_length)
    out = tmp_path / "out.json"
    recipe = write_recipe(tmp_path, proxy.url, file_sink(out), max_response_mb=1)
    proc, report, took = ingest(recipe, tmp_path)
    assert proc.returncode == 1 and took < 15
    message = " ".join(f["message"] for f in report["failures"])
    assert "experiments/search" in message and "1,048,576-byte cap" in message
    # read up to the cap, not the 40 MB (the proxy's writes stop once the socket buffers fill)
    assert proxy.bytes_sent.get("huge", 0) < 20 * 1024 * 1024
    assert not out.exists()


def test_the_rate_limit_covers_artifact_reads():
    from connector.http import HttpSettings
    from connector.source.http_backend import HttpBackend
    from tests.fake_http import ScriptedServer

    arrivals: list[tuple[float, str]] = []

    def answer(request):
        arrivals.append((time.monotonic(), request["path"]))
        if "mlflow-artifacts" in request["path"]:
            return 200, b"artifact_path: model\n", None
        return 200, {}, None

    with ScriptedServer(answer) as server:
        backend = HttpBackend(server.url, server.url, HttpSettings(max_requests_per_second=10))
        assert backend.search_experiments("ACTIVE_ONLY", 100, None) == ([], None)
        for i in range(5):
            assert backend.read_artifact(f"1/models/m-{i}/artifacts/MLmodel") == b"artifact_path: model\n"
        assert backend.search_registered_models(100, None) == ([], None)
        backend.close()
    assert sum("mlflow-artifacts" in path for _, path in arrivals) == 5
    gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:], strict=False)]
    assert len(gaps) == 6 and min(gaps) > 0.08, gaps  # 10 a second, artifact reads included


_PEAK_RSS = """
import sys
from connector.cli import main
peak_file = sys.argv.pop(-1)
try:
    main()
finally:
    status = open('/proc/self/status').read()
    peak = next(line for line in status.splitlines() if line.startswith('VmHWM'))
    open(peak_file, 'w').write(peak.split()[1])
"""


def _peak_rss_mb(recipe: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict, float]:
    """Run `ingest` in a process of its own; (process, report, its peak resident memory in MB)."""
    report_file, peak_file = tmp_path / f"report-{time.monotonic_ns()}.json", tmp_path / "peak"
    proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, "ingest", "-c", str(recipe), "--report-file",
                           str(report_file), str(peak_file)], capture_output=True, text=True, timeout=240)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(report_file.read_text(encoding="utf-8")), int(peak_file.read_text()) / 1024


@pytest.mark.parametrize("fault", ["gzip_bomb", "endless"])
def test_a_compressed_or_endless_answer_is_refused_with_memory_near_the_cap(proxy, tmp_path, fault):
    """The cap counts decoded bytes as they are decoded: a 2 MB gzip answer that expands to 2 GB, or
    a chunked answer that never ends, is refused with the process's peak memory near the cap: what
    a run refused at the same request with a small answer takes, plus the cap."""
    out = tmp_path / "out.json"
    recipe = write_recipe(tmp_path, proxy.url, file_sink(out), max_response_mb=8)
    proxy.add("experiments/search", "wrong_server", times=1)
    proc, _, baseline_mb = _peak_rss_mb(recipe, tmp_path)
    assert proc.returncode == 1
    proxy.add("experiments/search", fault, megabytes=2)
    proc, report, peak_mb = _peak_rss_mb(recipe, tmp_path)
    assert proc.returncode == 1
    [failure] = report["failures"]
    assert "experiments/search" in failure["message"] and "8,388,608-byte cap" in failure["message"]
    assert peak_mb < baseline_mb + 8 + 24, f"peak {peak_mb:.0f} MB, {baseline_mb:.0f} MB without it"
    assert peak_mb < 8 + 200
    assert not out.exists()


# -- answers that are not the expected server's: one line naming the URL and what answered ----------------
def _one_line_each(proc: subprocess.CompletedProcess) -> None:
    """No page in what is printed: every line short, no HTML."""
    printed = proc.stdout + proc.stderr
    assert "<p>" not in printed and "<html" not in printed.lower() and "Traceback" not in printed
    assert max(len(line) for line in printed.splitlines()) < 600


@pytest.mark.parametrize("status", [404, 400])
def test_an_html_error_page_from_the_tracking_server_stops_the_run(proxy, tmp_path, status):
    proxy.add("runs/search", "page", status=status, title=f"{status} Bad Gateway Page")
    out = tmp_path / "out.json"
    proc, report, took = ingest(write_recipe(tmp_path, proxy.url, file_sink(out)), tmp_path)
    assert proc.returncode == 1 and took < 15
    [failure] = report["failures"]
    assert failure == {"title": "MLflow source failed", "message": (
        f"{proxy.url}/api/2.0/mlflow/runs/search answered HTTP {status} with an HTML page titled "
        f"'{status} Bad Gateway Page', not MLflow's API: is {proxy.url} the MLflow tracking server's URL?")}
    assert proc.stderr.strip().splitlines() == [f"error: MLflow source failed: {failure['message']}"]
    _one_line_each(proc)
    assert not out.exists()


def test_a_tracking_uri_with_a_wrong_path_names_what_answered_and_nothing_about_the_registry(seeded_server,
                                                                                            tmp_path):
    url, _, _ = seeded_server
    out = tmp_path / "out.json"
    proc, report, _ = ingest(write_recipe(tmp_path, f"{url}/mlflow", file_sink(out)), tmp_path)
    assert proc.returncode == 1
    [failure] = report["failures"]
    assert failure["title"] == "MLflow source failed"
    assert failure["message"].startswith(f"{url}/mlflow/api/2.0/mlflow/")
    assert "answered HTTP 404 with an HTML page titled '404 Not Found'" in failure["message"]
    assert failure["message"].endswith("(is the server really mounted at the path /mlflow?)")
    assert "registry" not in proc.stdout.lower() and "registry" not in json.dumps(report["infos"])
    _one_line_each(proc)


def test_a_pasted_ui_address_gets_a_hint(seeded_server, tmp_path):
    url, _, _ = seeded_server
    recipe = write_recipe(tmp_path, f"{url}/#/experiments/1", file_sink(tmp_path / "out.json"))
    for command in ("ingest", "check"):
        proc = subprocess.run(CLI + [command, "-c", str(recipe)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert proc.stderr.strip() == (f"error: source.config.tracking_uri: {url}/#/experiments/1 has a '#...' part, "
                                       "the address of a page in the MLflow UI; the tracking URI is the server's "
                                       f"address: {url}")


def test_a_rest_sink_pointed_at_the_mlflow_server_stops_at_once(seeded_server, tmp_path):
    """404 HTML pages from MLflow: not GMS. The run stops (no splitting of batches, no page printed),
    and every proposal is in the dead letters."""
    from tests.fault_proxy import FaultProxy
    from tests.unattended_kit import dead_letters, rest_sink

    url, _, _ = seeded_server
    dead = tmp_path / "dead.json"
    with FaultProxy(url) as not_gms:  # counts what reaches the MLflow server
        proc, report, took = ingest(write_recipe(tmp_path, url, rest_sink(not_gms.url, dead)), tmp_path)
    assert proc.returncode == 1 and took < 30
    assert report["delivered"] == 0 and report["dead_lettered"] == report["proposals"] > 20
    assert len(dead_letters(dead)) == report["proposals"]
    posts = [path for method, path in not_gms.requests if method == "POST"]
    assert 1 <= len(posts) <= 8, posts  # stopped on the first answers, no bisection
    expected = (f"{not_gms.url}/aspects?action=ingestProposalBatch answered HTTP 404 with an HTML page titled "
                "'404 Not Found', not GMS's answer: is `server` DataHub's GMS (e.g. http://host:8080)?")
    assert expected in proc.stderr.splitlines()[0]
    assert len(proc.stderr.strip().splitlines()) <= 3
    _one_line_each(proc)
    recipe = write_recipe(tmp_path, url, rest_sink(url, dead), name="check.yml")
    check = subprocess.run(CLI + ["check", "-c", str(recipe)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 1
    assert (f"[FAIL] catalog server: {url}/config answered HTTP 404 with an HTML page titled '404 Not Found', "
            "not GMS's answer: is `server` DataHub's GMS (e.g. http://host:8080)?") in check.stdout.splitlines()


def test_compressed_answers_are_decoded_as_servers_send_them():
    """gzip (also in several members, also with bytes after the end), zlib deflate and raw deflate;
    a corrupt body is a transport problem in words."""
    import gzip
    import zlib

    from connector.http import HttpClient, HttpSettings, RetriesExhausted, RetryPolicy
    from tests.fake_http import ScriptedServer

    text = json.dumps({"experiments": [{"experiment_id": str(i), "name": "x" * 100} for i in range(2000)]}).encode()
    half = len(text) // 2
    bodies = [("gzip", gzip.compress(text)), ("gzip", gzip.compress(text[:half]) + gzip.compress(text[half:])),
              ("gzip", gzip.compress(text) + b"\0\0trailing"), ("deflate", zlib.compress(text)),
              ("deflate", zlib.compress(text)[2:-4])]
    for encoding, body in bodies:
        with ScriptedServer([(200, body, {"Content-Encoding": encoding})]) as server:
            client = HttpClient(server.url, HttpSettings())
            assert client.request("GET", "/x").body == text, encoding
            client.close()
    with ScriptedServer([(200, b"not gzip at all", {"Content-Encoding": "gzip"})]) as server:
        client = HttpClient(server.url, HttpSettings(retry=RetryPolicy(max_retries=0)))
        with pytest.raises(RetriesExhausted, match="the compressed answer is corrupt, after 1 attempt"):
            client.request("GET", "/x")
        client.close()


def test_an_html_gateway_page_after_every_retry_is_named_by_its_title(proxy, tmp_path):
    proxy.add("experiments/search", "page", status=502, title="502 Bad Gateway")
    proc, report, _ = ingest(write_recipe(tmp_path, proxy.url, file_sink(tmp_path / "out.json")), tmp_path)
    assert proc.returncode == 1
    [failure] = report["failures"]
    assert failure["message"] == (f"MLflow at {proxy.url} did not answer experiments/search (HTTP 502 with an HTML "
                                  "page titled '502 Bad Gateway', after 3 attempt(s))")
    _one_line_each(proc)
