"""Safe to run unattended (issue 11): a real `mlflow server` behind a fault-injecting proxy
(tests/fault_proxy.py) and the stand-in GMS (tests/catalog_server.py).

Each test asserts the time bound, the invariant `delivered + dead_lettered == proposals` from the
report, the files on disk (output unchanged, dead letters present, no temporary files) and the
exit code. The bounds are made small through recipe keys (tests/unattended_kit.py), so no test
waits for long. State that cannot go blind: tests/test_unattended_state.py."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.catalog_server import CatalogServer
from tests.unattended_kit import (
    assert_settled_once, assert_stopped_cleanly, dead_letters, file_sink, good_output, ingest, proposal_key,
    rest_sink, start_ingest, temp_files, terminate, write_recipe,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.server


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
    assert failure["title"] == "MLflow source failed"
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


# -- the catalog side: bounded waits, nothing lost, nothing counted twice ---------------------------------

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
        # the first batch answered 503 + Retry-After: the run is now in its hour-long wait
        wait_for(lambda: 503 in catalog.answered, what="the first batch to be told to wait")
        out, err, took = terminate(proc)
        assert len(catalog.requests) == 1  # it waited as told, until the stop
    report = assert_stopped_cleanly(proc, out, err, took, report_file, catalog, dead, tmp_path)
    assert report["delivered"] == 0 and report["dead_lettered"] == report["proposals"]


def _posts(catalog):
    return [r for r in catalog.requests if r["method"] == "POST"]


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
        before = len(proxy.requests)
        proc = start_ingest(write_recipe(tmp_path, proxy.url, sink), report_file)
        # the crawl is over once MLflow has been asked all that the dry run asked it
        wait_for(lambda: len(proxy.requests) - before >= dry["source_requests"] and _posts(catalog),
                 what="the end of the crawl and the first batch")
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


def test_sigterm_during_the_final_delivery_exits_1_even_when_the_last_batch_lands(proxy, tmp_path):
    dead, report_file = tmp_path / "dead.json", tmp_path / "report.json"
    with CatalogServer() as catalog:
        catalog.stall_first, catalog.stall_seconds = 10**6, 1.5
        sink = rest_sink(catalog.url, dead, max_batch_size=10000, max_in_flight=1)  # one batch, at the end
        proc = start_ingest(write_recipe(tmp_path, proxy.url, sink), report_file)
        wait_for(lambda: _posts(catalog), what="the one batch")  # after the reads of shared aspects
        out, err, took = terminate(proc)
    assert proc.returncode == 1 and took < 6, out + err
    assert "status:     FAILURE" in out and "Traceback" not in err
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert report["durations"]["crawl_sec"] > 0  # the crawl had ended
    # the batch was answered within the grace: delivered, nothing dead-lettered, but the run was stopped
    assert report["delivered"] == report["proposals"] == len(catalog.received) and report["dead_lettered"] == 0
    assert any(f["title"] == "Interrupted" for f in report["failures"])
    assert not dead.exists() and temp_files(tmp_path) == []


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
