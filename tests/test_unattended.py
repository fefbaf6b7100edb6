"""Safe to run unattended (issue 11) and wrong servers (issue 12): a real `mlflow server` behind a
fault-injecting proxy (tests/fault_proxy.py) and the stand-in GMS (tests/catalog_server.py).

Each test asserts the time bound, the invariant `delivered + dead_lettered == proposals` from the
report, the files on disk (output unchanged, dead letters present, no temporary files) and the
exit code. The bounds are made small through recipe keys, so no test waits for long."""
from __future__ import annotations

import json
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
    proc, report, took = ingest(write_recipe(tmp_path, proxy.url, file_sink(out)), tmp_path)
    assert proc.returncode == 1
    # one attempt ends after request_deadline_sec (2 s), retries end with the budget (3 s)
    assert took < 12, took
    message = " ".join(f["message"] for f in report["failures"])
    assert f"{proxy.url}" in message and "experiments/search" in message
    assert "within 2 s" in message
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


def test_an_item_without_its_id_is_an_error_naming_the_endpoint(proxy, tmp_path):
    def drop_ids(answer: dict) -> dict:
        for experiment in answer.get("experiments", []):
            experiment.pop("experiment_id", None)
        return answer

    out, before = good_output(tmp_path, proxy)
    proxy.add("experiments/search", "rewrite", rewrite=drop_ids)
    proc, report, _ = ingest(write_recipe(tmp_path, proxy.url, file_sink(out)), tmp_path)
    assert proc.returncode == 1
    [failure] = report["failures"]
    assert failure["title"] == "UnexpectedAnswer" and "KeyError" not in failure["message"]
    assert f"{proxy.url}/api/2.0/mlflow/experiments/search answered an item (experiments[0]) without " \
           "experiment_id" in failure["message"]
    assert out.read_bytes() == before


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
    assert proxy.bytes_sent["huge"] < 20 * 1024 * 1024
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
    return [(proposal_key(r), why["reason"]) for r, why in zip(records, reasons)]


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
