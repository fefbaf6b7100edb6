"""Safe to run unattended (issue 11) and wrong servers (issue 12): a real `mlflow server` behind a
fault-injecting proxy (tests/fault_proxy.py) and the stand-in GMS (tests/catalog_server.py).

Each test asserts the time bound, the invariant `delivered + dead_lettered == proposals` from the
report, the files on disk (output unchanged, dead letters present, no temporary files) and the
exit code. The bounds are made small through recipe keys, so no test waits for long."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from connector.sinks.file import read_proposals
from tests.catalog_server import CatalogServer
from tests.fault_proxy import FaultProxy

CLI = [sys.executable, "-m", "connector.cli"]
# small bounds: one attempt of a request, all of its attempts, one wait between attempts
FAST_SOURCE = {"timeout_sec": 2, "request_deadline_sec": 2, "retry_budget_sec": 3, "max_backoff_sec": 0.2,
               "max_retries": 2, "retry_backoff_sec": 0.05, "max_workers": 2}
FAST_SINK = {"timeout_sec": 2, "request_deadline_sec": 2, "retry_budget_sec": 2, "max_backoff_sec": 0.3,
             "max_retries": 3, "retry_backoff_sec": 0.05}


@pytest.fixture
def proxy(seeded_server):
    url, _, _ = seeded_server
    with FaultProxy(url) as p:
        yield p


def write_recipe(tmp_path: Path, tracking_uri: str, sink: dict, *, name: str = "recipe.yml",
                 state: dict | None = None, pipeline: str | None = None, **source) -> Path:
    recipe: dict = {"source": {"type": "mlflow", "config": {"tracking_uri": tracking_uri, **FAST_SOURCE, **source}},
                    "sink": sink}
    if pipeline:
        recipe["pipeline_name"] = pipeline
    if state is not None:
        recipe["state"] = state
    path = tmp_path / name
    path.write_text(json.dumps(recipe), encoding="utf-8")
    return path


def file_sink(path: Path) -> dict:
    return {"type": "file", "config": {"filename": str(path)}}


def rest_sink(server: str, dead: Path, **config) -> dict:
    return {"type": "datahub-rest", "config": {"server": server, "dead_letter_file": str(dead), **FAST_SINK,
                                               "max_batch_size": 20, **config}}


def ingest(recipe: Path, tmp_path: Path, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess,
                                                                                    dict, float]:
    """Run the CLI; (process, report JSON, seconds it took)."""
    report_file = tmp_path / f"report-{time.monotonic_ns()}.json"
    started = time.monotonic()
    proc = subprocess.run(CLI + ["ingest", "-c", str(recipe), "--report-file", str(report_file), *args],
                          capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - started
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(report_file.read_text(encoding="utf-8")), took


def temp_files(*directories: Path) -> list[Path]:
    return [p for d in directories for p in d.rglob("*.tmp")]


def good_output(tmp_path: Path, proxy: FaultProxy) -> tuple[Path, bytes]:
    """A complete output file from a clean run, which a failed run must leave as it is."""
    out = tmp_path / "out.json"
    proc, report, _ = ingest(write_recipe(tmp_path, proxy.url, file_sink(out), name="good.yml"), tmp_path)
    assert proc.returncode == 0 and report["proposals"] > 20, proc.stderr
    proxy.requests.clear()
    return out, out.read_bytes()


# -- a source that never ends an answer, or a listing -------------------------------------------------

def test_a_dripping_mlflow_is_bounded_by_the_request_deadline(proxy, tmp_path):
    out, before = good_output(tmp_path, proxy)
    proxy.add("experiments/search", "drip", interval_sec=0.2)
    recipe = write_recipe(tmp_path, proxy.url, file_sink(out), request_deadline_sec=1, retry_budget_sec=1.5)
    proc, report, took = ingest(recipe, tmp_path)
    assert proc.returncode == 1
    # one attempt ends after request_deadline_sec (1 s), retries end with the budget (1.5 s)
    assert took < 8, took
    message = " ".join(f["message"] for f in report["failures"])
    assert f"MLflow at {proxy.url} did not answer experiments/search (no complete answer within 1 s" in message
    assert out.read_bytes() == before and temp_files(tmp_path) == []


def test_a_repeated_page_token_fails_naming_the_listing(proxy, tmp_path):
    out, before = good_output(tmp_path, proxy)
    proxy.add("experiments/search", "repeat_token")
    proc, report, took = ingest(write_recipe(tmp_path, proxy.url, file_sink(out)), tmp_path)
    assert proc.returncode == 1 and took < 15
    [failure] = report["failures"]
    assert failure["title"] == "PageLoopError"
    assert "experiments" in failure["message"] and "a second time" in failure["message"]
    assert sum(path.endswith("experiments/search") for _, path in proxy.requests) == 2  # stopped at once
    assert out.read_bytes() == before and temp_files(tmp_path) == []


def test_a_connection_reset_is_retried_then_named(proxy, tmp_path):
    out, before = good_output(tmp_path, proxy)
    proxy.add("registered-models/search", "reset")
    proc, report, took = ingest(write_recipe(tmp_path, proxy.url, file_sink(out)), tmp_path)
    assert proc.returncode == 1 and took < 15
    message = " ".join(f["message"] for f in report["failures"])
    assert "registered-models/search" in message and "after 3 attempt(s)" in message
    assert sum("registered-models/search" in path for _, path in proxy.requests) == 3
    assert out.read_bytes() == before and temp_files(tmp_path) == []


def test_an_mlflow_answering_503_retry_after_an_hour_is_bounded(proxy, tmp_path):
    out, before = good_output(tmp_path, proxy)
    proxy.add("runs/search", "unavailable", retry_after="3600")
    proc, report, took = ingest(write_recipe(tmp_path, proxy.url, file_sink(out)), tmp_path)
    assert proc.returncode == 1 and took < 15, took
    message = " ".join(f["message"] for f in report["failures"])
    assert "runs/search" in message and "HTTP 503" in message
    assert out.read_bytes() == before


# -- wrong servers (issue 12) ------------------------------------------------------------------------------

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
    assert failure["title"] == "UnexpectedAnswer" and "KeyError" not in failure["message"]
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


# -- the catalog side: bounded waits, nothing lost, nothing counted twice ---------------------------------

def proposal_key(record: dict) -> tuple:
    aspect = record["aspect"]
    aspect = aspect["json"] if isinstance(aspect, dict) and set(aspect) == {"json"} else aspect
    return record["entityUrn"], record["aspectName"], json.dumps(aspect, sort_keys=True)


def dead_letters(path: Path) -> list[tuple[tuple, str]]:
    """(proposal key, reason) of every dead letter, in the file's order."""
    if not path.exists():
        return []
    records = read_proposals(str(path))
    reasons = [json.loads(line) for line in Path(f"{path}.reasons.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["entityUrn"], r["aspectName"]) for r in records] == [(r["entityUrn"], r["aspectName"]) for r in reasons]
    return [(proposal_key(r), why["reason"]) for r, why in zip(records, reasons, strict=True)]


def assert_settled_once(report: dict, catalog: CatalogServer, dead: Path, unknown_allowed: bool = False) -> None:
    """delivered + dead-lettered == proposals; what the catalog took is counted delivered, and is
    in the dead letters only as 'delivery unknown' (a batch on the wire when the run stopped)."""
    letters = dead_letters(dead)
    assert report["delivered"] + report["dead_lettered"] == report["proposals"]
    assert report["dead_lettered"] == len(letters)
    received = [proposal_key(r) for r in catalog.received]
    lettered = {key for key, _ in letters}
    unknown = {key for key, reason in letters if "delivery unknown" in reason}
    twice = [key for key in received if key in lettered and key not in unknown]
    assert twice == [], f"{len(twice)} delivered proposal(s) also dead-lettered"
    if not unknown_allowed:
        assert not unknown
    assert report["delivered"] == sum(key not in unknown for key in received)


def test_a_gms_answering_503_retry_after_an_hour_ends_within_seconds(seeded_server, tmp_path):
    url, _, _ = seeded_server
    dead = tmp_path / "dead.json"
    with CatalogServer() as catalog:
        catalog.fail_first, catalog.retry_after = 10**6, "3600"
        # many retries allowed: the budget (2 s) ends them, each wait capped at 0.3 s
        recipe = write_recipe(tmp_path, url, rest_sink(catalog.url, dead, max_retries=100))
        proc, report, took = ingest(recipe, tmp_path)
    assert proc.returncode == 1 and took < 15, took
    assert report["delivered"] == 0 and report["dead_lettered"] == report["proposals"] > 20
    assert_settled_once(report, catalog, dead)
    assert catalog.received == [] and 3 < len(catalog.requests) < 20  # one batch's retries, then no more
    assert f"{catalog.url} did not take proposals (HTTP 503" in proc.stderr
    assert temp_files(tmp_path) == []


@pytest.mark.parametrize("one_by_one", [False, True], ids=["split-batch", "one-by-one"])
def test_a_rejected_proposal_then_an_outage_counts_every_proposal_once(seeded_server, tmp_path, one_by_one):
    url, _, _ = seeded_server
    dead = tmp_path / "dead.json"
    with CatalogServer() as catalog:
        bad = []

        def reject(record):  # the first containerProperties the server sees is refused
            if record["aspectName"] == "containerProperties" and (not bad or bad[0] == record["entityUrn"]):
                bad[:1] = [record["entityUrn"]]
                return "Aspect containerProperties failed validation"
            return None

        catalog.reject = reject
        catalog.no_batch_endpoint = one_by_one
        # then the server goes away while that batch is being split, or sent one by one
        catalog.gone_after = 12 if one_by_one else 3
        recipe = write_recipe(tmp_path, url, rest_sink(catalog.url, dead, max_in_flight=1, max_batch_size=20))
        proc, report, took = ingest(recipe, tmp_path)
    assert proc.returncode == 1 and took < 20
    assert 0 < len(catalog.received) == report["delivered"] < report["proposals"]
    assert_settled_once(report, catalog, dead)
    # the refused proposal is kept (as refused, or as not taken once the server was gone)
    assert (bad[0], "containerProperties") in [key[:2] for key, _ in dead_letters(dead)]
    assert (bad[0], "containerProperties") not in [key[:2] for key in map(proposal_key, catalog.received)]


# -- SIGTERM in every phase: out within seconds, report printed and written, nothing lost ---------------

def wait_for(condition, timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def terminate(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> tuple[str, str, float]:
    """SIGTERM (or `signum`); (stdout, stderr, seconds from the signal to the exit)."""
    proc.send_signal(signum)
    signalled = time.monotonic()
    out, err = proc.communicate(timeout=30)
    return out, err, time.monotonic() - signalled


def start_ingest(recipe: Path, report_file: Path) -> subprocess.Popen:
    return subprocess.Popen(CLI + ["ingest", "-c", str(recipe), "--report-file", str(report_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_stopped_cleanly(proc, out, err, took, report_file, catalog, dead, tmp_path) -> dict:
    assert proc.returncode == 1, out + err
    assert took < 6, f"{took:.1f} s from SIGTERM to exit"
    assert "Traceback" not in err and "Aborted" not in err + out
    assert "=== MLflow ingestion report" in out and "status:     FAILURE" in out
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert report["dead_lettered"] > 0 and Path(report["dead_letter_file"]) == dead
    assert_settled_once(report, catalog, dead, unknown_allowed=True)
    assert temp_files(tmp_path) == []
    return report


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_sigterm_during_the_crawl(proxy, tmp_path, signum):
    dead, report_file = tmp_path / "dead.json", tmp_path / "report.json"
    proxy.add("runs/search", "drip", interval_sec=0.05)  # the crawl sits in a slow answer
    with CatalogServer() as catalog:
        recipe = write_recipe(tmp_path, proxy.url, rest_sink(catalog.url, dead, max_batch_size=2, max_in_flight=1),
                              request_deadline_sec=120, timeout_sec=60)
        proc = start_ingest(recipe, report_file)
        wait_for(lambda: any("runs/search" in path for _, path in proxy.requests) and catalog.received,
                 what="the crawl to reach runs/search with something delivered")
        out, err, took = terminate(proc, signum)
    report = assert_stopped_cleanly(proc, out, err, took, report_file, catalog, dead, tmp_path)
    assert any(f["title"] == "Interrupted" for f in report["failures"])
    assert report["delivered"] > 0 and report["crawled"].get("run", 0) == 0


def test_sigterm_while_the_gms_is_asked_to_wait_an_hour(seeded_server, tmp_path):
    url, _, _ = seeded_server
    dead, report_file = tmp_path / "dead.json", tmp_path / "report.json"
    with CatalogServer() as catalog:
        catalog.fail_first, catalog.retry_after = 10**6, "3600"
        # no cap on the wait: only the stop ends it
        sink = rest_sink(catalog.url, dead, max_backoff_sec=7200, retry_budget_sec=7200, max_retries=10)
        proc = start_ingest(write_recipe(tmp_path, url, sink), report_file)
        wait_for(lambda: catalog.requests, what="the first batch")
        time.sleep(0.5)
        out, err, took = terminate(proc)
        assert len(catalog.requests) == 1  # it waited as told, until the stop
    report = assert_stopped_cleanly(proc, out, err, took, report_file, catalog, dead, tmp_path)
    assert report["delivered"] == 0 and report["dead_lettered"] == report["proposals"]


def test_sigterm_during_the_final_delivery(proxy, tmp_path):
    """The crawl is over, the last batches wait for a catalog that takes 5 s per request: the stop
    dead-letters them after a short grace (a batch on the wire as 'delivery unknown')."""
    dead, report_file = tmp_path / "dead.json", tmp_path / "report.json"
    _, dry, _ = ingest(write_recipe(tmp_path, proxy.url, file_sink(tmp_path / "x.json"), name="dry.yml"), tmp_path,
                       "--dry-run")
    half = dry["proposals"] // 2 + 1  # one batch goes during the crawl, the other waits for it at the end
    with CatalogServer() as catalog:
        catalog.stall_first, catalog.stall_seconds = 10**6, 5.0
        sink = rest_sink(catalog.url, dead, max_batch_size=half, max_in_flight=1, request_deadline_sec=60,
                         timeout_sec=60)
        proc = start_ingest(write_recipe(tmp_path, proxy.url, sink), report_file)
        wait_for(lambda: catalog.requests, what="the first batch")
        crawled = len(proxy.requests)
        time.sleep(0.7)
        assert len(proxy.requests) == crawled  # nothing more asked of MLflow: the crawl is over
        out, err, took = terminate(proc)
        wait_for(lambda: len(catalog.received) == half, timeout=10, what="the stalled batch to land")
    report = assert_stopped_cleanly(proc, out, err, took, report_file, catalog, dead, tmp_path)
    assert report["durations"]["crawl_sec"] > 0 and report["delivered"] == 0  # the crawl had ended
    letters = dead_letters(dead)
    # the batch on the wire landed after the stop: kept as 'delivery unknown' (re-sending it is harmless)
    unknown = [key for key, reason in letters if "delivery unknown" in reason]
    assert sorted(unknown) == sorted(map(proposal_key, catalog.received))
    assert all("not sent" in reason for _, reason in letters)  # the rest was never sent
    assert any("stopped during delivery" in f["message"] for f in report["failures"])


# -- files: a dead-letter file that cannot be written, failed runs, previews ---------------------------------

@pytest.mark.parametrize("obstacle", ["parent-is-a-file", "path-is-a-directory"])
def test_a_dead_letter_file_that_cannot_be_written_is_a_clear_error(seeded_server, tmp_path, obstacle):
    url, _, _ = seeded_server
    if obstacle == "parent-is-a-file":  # no temporary file can even be made
        blocker = tmp_path / "not-a-directory"
        blocker.write_text("in the way\n")
        dead = blocker / "dead.json"
    else:  # a directory in the way is named, not moved aside as an unreadable file
        dead = tmp_path / "dead.json"
        dead.mkdir()
        (dead / "keep.txt").write_text("in the way\n")
    with CatalogServer() as catalog:
        catalog.fail_first, catalog.retry_after = 10**6, "0"
        proc, report, took = ingest(write_recipe(tmp_path, url, rest_sink(catalog.url, dead)), tmp_path)
    assert proc.returncode == 1 and took < 15
    assert "=== MLflow ingestion report" in proc.stdout
    assert f"dead-letter file {dead} cannot be written" in proc.stderr
    assert f"{report['proposals']} proposal(s) not delivered are not on disk" in proc.stderr
    assert report["delivered"] == 0 and report["dead_lettered"] == report["proposals"] > 0
    assert temp_files(tmp_path) == [] and not list(tmp_path.rglob(".dead.json.*"))
    in_the_way = dead.parent if obstacle == "parent-is-a-file" else dead / "keep.txt"
    assert in_the_way.read_text() == "in the way\n"  # left as it was


def _only_the_default_experiment(answer: dict) -> dict:
    answer["experiments"] = [e for e in answer.get("experiments", []) if e["experiment_id"] == "0"]
    return answer


def _a_non_numeric_metric(answer: dict) -> dict:
    run = next(r for r in answer.get("runs", []) if r.get("data", {}).get("metrics"))
    run["data"]["metrics"][0]["value"] = "not-a-number"
    return answer


@pytest.mark.parametrize("path,rewrite,title", [
    ("experiments/search", _only_the_default_experiment, "Stale-entity removal refused"),
    ("runs/search", _a_non_numeric_metric, "Mapping failed"),
], ids=["removal-refused", "mapping-failed"])
def test_a_failed_run_leaves_the_previous_output_and_state_as_they_were(proxy, tmp_path, path, rewrite, title):
    out, state = tmp_path / "out.json", tmp_path / "state.json"
    recipe = write_recipe(tmp_path, proxy.url, file_sink(out), pipeline="nightly", state={"path": str(state)})
    proc, report, _ = ingest(recipe, tmp_path)
    assert proc.returncode == 0 and report["proposals"] > 20, proc.stderr
    output_before, state_before = out.read_bytes(), state.read_bytes()
    proxy.add(path, "rewrite", rewrite=rewrite)
    proc, report, _ = ingest(recipe, tmp_path)
    assert proc.returncode == 1
    assert title in [f["title"] for f in report["failures"]]
    assert report["output"] is None and report["checkpoint_after"] is None
    assert out.read_bytes() == output_before and state.read_bytes() == state_before
    assert temp_files(tmp_path) == []


def test_preview_never_touches_the_recipes_output(proxy, tmp_path):
    out, before = good_output(tmp_path, proxy)
    recipe = write_recipe(tmp_path, proxy.url, file_sink(out))
    proc, report, _ = ingest(recipe, tmp_path, "--preview", "5")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)  # the proposals alone on stdout; the report on stderr
    assert len(shown) == report["proposals"] == 5 and all(r["entityUrn"].startswith("urn:li:") for r in shown)
    assert "=== MLflow ingestion report" in proc.stderr
    preview = tmp_path / "preview.json"
    proc, report, _ = ingest(recipe, tmp_path, "--preview", "5", "--preview-file", str(preview))
    assert proc.returncode == 0 and "=== MLflow ingestion report" in proc.stdout
    written = json.loads(preview.read_text(encoding="utf-8"))
    assert list(map(proposal_key, written)) == list(map(proposal_key, shown))
    assert out.read_bytes() == before and temp_files(tmp_path) == []


# -- state that cannot go blind -------------------------------------------------------------------------

YEAR_2100_MS = 4_102_444_800_000


@pytest.fixture(scope="module")
def clock_server(tmp_path_factory):
    """An MLflow server of its own (runs are added to it): one run dated 2100, one of now."""
    from mlflow import MlflowClient

    from tests.mlflow_server import mlflow_server

    with mlflow_server(tmp_path_factory.mktemp("mlflow-clock")) as url:
        client = MlflowClient(url)
        experiment = client.create_experiment("clock")
        client.create_run(experiment, start_time=YEAR_2100_MS, run_name="from-2100")
        client.create_run(experiment, run_name="today")
        yield url, client, experiment


def state_recipe(url: str, tmp_path: Path, filename: str, incremental: bool = True, pipeline: str = "cron"):
    from connector.recipe import parse_recipe

    return parse_recipe({"pipeline_name": pipeline,
                         "source": {"type": "mlflow", "config": {"tracking_uri": url, "incremental": incremental}},
                         "sink": file_sink(tmp_path / filename), "state": {"path": str(tmp_path / "state.json")}})


def checkpoint(tmp_path: Path, pipeline: str = "cron") -> dict:
    return json.loads((tmp_path / "state.json").read_text())["pipelines"][pipeline]["checkpoint"]


def test_a_run_dated_2100_does_not_move_the_checkpoint_past_now(clock_server, tmp_path):
    from connector.pipeline import run_ingest
    from connector.mapping.urns import run_urn

    url, client, experiment = clock_server
    first = run_ingest(state_recipe(url, tmp_path, "first.json"))
    assert first.ok and first.mode == "full", first.failures
    now_ms = time.time() * 1000
    assert checkpoint(tmp_path)["runs_started_until"] <= now_ms
    # a run started after that is seen by the next incremental run
    later = client.create_run(experiment, run_name="later").info.run_id
    second = run_ingest(state_recipe(url, tmp_path, "second.json"))
    assert second.ok and second.mode == "incremental"
    assert run_urn(later) in {r["entityUrn"] for r in read_proposals(str(tmp_path / "second.json"))}
    assert checkpoint(tmp_path)["runs_started_until"] <= time.time() * 1000


def test_a_checkpoint_in_the_future_makes_the_next_run_a_full_one(clock_server, tmp_path):
    from connector.pipeline import run_ingest

    url, _, _ = clock_server
    assert run_ingest(state_recipe(url, tmp_path, "first.json")).ok
    state = json.loads((tmp_path / "state.json").read_text())
    state["pipelines"]["cron"]["checkpoint"]["runs_started_until"] = YEAR_2100_MS  # written by an older release
    (tmp_path / "state.json").write_text(json.dumps(state))
    report = run_ingest(state_recipe(url, tmp_path, "second.json"))
    assert report.ok and report.mode == "full"
    assert checkpoint(tmp_path)["runs_started_until"] <= time.time() * 1000  # recomputed from what it saw


def test_pipelines_saving_into_one_state_file_at_once_keep_every_entry(tmp_path):
    import threading

    from connector.state.store import PipelineState, StateFile

    path, names, rounds = tmp_path / "state.json", [f"pipeline-{i}" for i in range(6)], 25
    start = threading.Barrier(len(names))
    errors: list[BaseException] = []

    def save_many(name: str) -> None:
        store = StateFile(path)  # each its own, as separate processes would have
        start.wait()
        try:
            for i in range(rounds):
                store.save(name, PipelineState(checkpoint={"runs_started_until": i, "run_id": name}))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save_many, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    saved = json.loads(path.read_text())["pipelines"]
    assert {n: saved[n]["checkpoint"] for n in names} == {
        n: {"runs_started_until": rounds - 1, "run_id": n} for n in names}
    assert temp_files(tmp_path) == []


def test_pipeline_names_that_differ_never_share_a_lock(tmp_path):
    from connector.state.lock import LockHeld, PipelineLock, lock_name

    names = ["team/a", "team_a", "team a", "team:a", "TEAM_A"]
    names.append(lock_name("team/a"))  # a name spelled like another's lock key
    assert len({lock_name(n) for n in names}) == len(names)
    assert lock_name("nightly-sync").startswith("nightly-sync-")  # a plain name stays readable
    held = [PipelineLock(tmp_path / "state.json", n) for n in names]
    for lock in held:
        lock.acquire()  # all at once: no two names share a lock file
    try:
        with pytest.raises(LockHeld):
            PipelineLock(tmp_path / "state.json", "team/a").acquire()
    finally:
        for lock in held:
            lock.release()


# -- incremental runs with the file sink -----------------------------------------------------------------

def test_incremental_file_output_keeps_a_file_per_run_or_warns(clock_server, tmp_path):
    from connector.pipeline import run_ingest

    url, client, experiment = clock_server
    first = run_ingest(state_recipe(url, tmp_path, "catalog-{run_id}.json"))
    client.create_run(experiment, run_name="between")
    second = run_ingest(state_recipe(url, tmp_path, "catalog-{run_id}.json"))
    assert first.ok and second.ok and second.mode == "incremental"
    files = sorted(tmp_path.glob("catalog-*.json"))
    assert [f.name for f in files] == sorted(f"catalog-{r.run_id}.json" for r in (first, second))
    assert len(read_proposals(str(tmp_path / f"catalog-{first.run_id}.json"))) > len(
        read_proposals(str(tmp_path / f"catalog-{second.run_id}.json"))) > 0
    assert not any(w["title"] == "Incremental file output" for w in first.warnings + second.warnings)
    fixed = run_ingest(state_recipe(url, tmp_path, "catalog.json"))
    assert fixed.ok and fixed.mode == "incremental"
    [warning] = [w for w in fixed.warnings if w["title"] == "Incremental file output"]
    assert "{timestamp} or {run_id}" in warning["message"]


def test_dead_letter_reasons_never_hold_a_secret(seeded_server, tmp_path):
    """A catalog that echoes what it got (the token, the MLflow password) in its rejections."""
    url, _, _ = seeded_server
    token, password, dead = "gms-tok-e7f1a9c3b2", "mlflow-pw/with#odd?chars", tmp_path / "dead.json"
    with CatalogServer(token=token) as catalog:
        catalog.reject = lambda r: (f"refused: Authorization: Bearer {token} (MLflow password {password})"
                                    if r["aspectName"] == "containerProperties" else None)
        recipe = write_recipe(tmp_path, url, rest_sink(catalog.url, dead, token=token), username="ingest",
                              password=password)
        proc, report, _ = ingest(recipe, tmp_path)
    assert proc.returncode == 1 and report["dead_lettered"] > 0
    assert_settled_once(report, catalog, dead)
    reasons = Path(f"{dead}.reasons.jsonl").read_text(encoding="utf-8")
    assert "refused: Authorization: Bearer *** (MLflow password ***)" in reasons
    for text in (reasons, dead.read_text(encoding="utf-8"), proc.stdout, proc.stderr, json.dumps(report)):
        assert token not in text and password not in text


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


def test_sigterm_during_the_final_delivery_exits_1_even_when_the_last_batch_lands(proxy, tmp_path):
    dead, report_file = tmp_path / "dead.json", tmp_path / "report.json"
    with CatalogServer() as catalog:
        catalog.stall_first, catalog.stall_seconds = 10**6, 1.5
        sink = rest_sink(catalog.url, dead, max_batch_size=10000, max_in_flight=1)  # one batch, at the end
        proc = start_ingest(write_recipe(tmp_path, proxy.url, sink), report_file)
        wait_for(lambda: catalog.requests, what="the one batch")
        out, err, took = terminate(proc)
    assert proc.returncode == 1 and took < 6, out + err
    assert "status:     FAILURE" in out and "Traceback" not in err
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert report["durations"]["crawl_sec"] > 0  # the crawl had ended
    # the batch was answered within the grace: delivered, nothing dead-lettered, but the run was stopped
    assert report["delivered"] == report["proposals"] == len(catalog.received) and report["dead_lettered"] == 0
    assert any(f["title"] == "Interrupted" for f in report["failures"])
    assert not dead.exists() and temp_files(tmp_path) == []
