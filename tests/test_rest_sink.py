"""REST sink against a test catalog server on loopback: contract with DataHub's own emitter,
end to end from a real MLflow server, and faults (nothing lost in any of them)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from connector.pipeline import run_ingest
from connector.send import run_send
from connector.config.recipe import parse_recipe
from connector.sinks.file import read_proposals
from tests.catalog_server import CatalogServer

CLI = [sys.executable, "-m", "connector.cli"]
TOKEN = "sekret-token-value-123"
GOLDEN = Path(__file__).parent / "golden"


def rest_sink(server_url, tmp_path, **config):
    return {"type": "datahub-rest", "config": {
        "server": server_url, "dead_letter_file": str(tmp_path / "dead.json"),
        "retry_backoff_sec": 0.01, "max_retries": 3, "timeout_sec": 5, "max_batch_size": 50, **config}}


def strip(records):
    return sorted((r["entityUrn"], r["aspectName"], json.dumps(r["aspect"], sort_keys=True)) for r in records)


@pytest.fixture(scope="module")
def file_output(seeded_server, tmp_path_factory):
    """The file sink's output for the seeded store: the reference for everything below."""
    url, _, _ = seeded_server
    out = tmp_path_factory.mktemp("rest") / "file.json"
    report = run_ingest(parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": url}},
                                      "sink": {"type": "file", "config": {"filename": str(out)}}}))
    assert report.ok
    return out, [{**r, "aspect": r["aspect"]["json"]} for r in read_proposals(str(out))]


def send_file(path, server_url, tmp_path, **config):
    recipe = parse_recipe({"source": {"type": "mlflow"}, "sink": rest_sink(server_url, tmp_path, **config)})
    return run_send(recipe, str(path))


@pytest.mark.server
def test_end_to_end_rest_equals_file_sink(seeded_server, file_output, tmp_path):
    url, _, _ = seeded_server
    _, reference = file_output
    with CatalogServer(token=TOKEN) as catalog:
        recipe = parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": url}},
                               "sink": rest_sink(catalog.url, tmp_path, token=TOKEN)})
        report = run_ingest(recipe)
    assert report.ok, report.failures
    assert catalog.problems == []
    assert strip(catalog.received) == strip(reference)
    assert report.delivered == len(reference) and report.dead_lettered == 0
    batches = [r for r in catalog.requests if r["path"] == "/aspects?action=ingestProposalBatch"]
    assert len(batches) == -(-len(reference) // 50)  # batched, 50 per request
    assert not (tmp_path / "dead.json").exists()


def test_batch_request_matches_datahubs_own_emitter(file_output, tmp_path):
    from datahub.emitter.mcp import MetadataChangeProposalWrapper
    from datahub.emitter.rest_emitter import DataHubRestEmitter
    from datahub.emitter.serialization_helper import post_json_transform, pre_json_transform
    from datahub.metadata.schema_classes import ASPECT_NAME_MAP, SystemMetadataClass

    _, reference = file_output
    sample = reference[:40]
    path = tmp_path / "sample.json"
    path.write_text(json.dumps([{**r, "aspect": {"json": r["aspect"]}} for r in sample]))
    with CatalogServer(token=TOKEN) as ours:
        assert send_file(path, ours.url, tmp_path, token=TOKEN).ok
    with CatalogServer(token=TOKEN) as theirs:
        emitter = DataHubRestEmitter(theirs.url, token=TOKEN, openapi_ingestion=False)
        emitter.emit_mcps([MetadataChangeProposalWrapper(
            entityUrn=r["entityUrn"],
            aspect=ASPECT_NAME_MAP[r["aspectName"]].from_obj(post_json_transform(r["aspect"])),
            systemMetadata=SystemMetadataClass(**r["systemMetadata"])) for r in sample])
    [our_request] = [r for r in ours.requests if r["method"] == "POST"]
    [their_request] = [r for r in theirs.requests if r["method"] == "POST"]
    assert our_request["path"] == their_request["path"] == "/aspects?action=ingestProposalBatch"
    for header in ("Content-Type", "X-RestLi-Protocol-Version", "Authorization"):
        assert our_request["headers"][header] == their_request["headers"][header], header
    our_body, their_body = json.loads(our_request["body"]), json.loads(their_request["body"])
    assert set(our_body) == set(their_body) and our_body["async"] == their_body["async"]
    for a, b in zip(our_body["proposals"], their_body["proposals"], strict=True):
        assert set(a) - {"systemMetadata"} == set(b) - {"systemMetadata"}
        assert set(a["aspect"]) == set(b["aspect"])
        assert {k: a[k] for k in ("entityType", "entityUrn", "changeType", "aspectName")} == \
               {k: b[k] for k in ("entityType", "entityUrn", "changeType", "aspectName")}
        assert a["aspect"]["contentType"] == b["aspect"]["contentType"]
    # the same aspects reach the server, whoever sent them (theirs spells out schema defaults)
    def normalized(records):
        return strip([{**r, "aspect": pre_json_transform(ASPECT_NAME_MAP[r["aspectName"]].from_obj(
            post_json_transform(r["aspect"])).to_obj())} for r in records])
    assert normalized(ours.received) == normalized(theirs.received)
    assert ours.problems == theirs.problems == []


def test_retries_503_with_retry_after_then_delivers_all(file_output, tmp_path):
    path, reference = file_output
    with CatalogServer() as catalog:
        catalog.fail_first, catalog.retry_after = 3, "0"
        report = send_file(path, catalog.url, tmp_path, max_in_flight=1)
    assert report.ok and report.delivered == len(reference) == report.proposals and report.dead_lettered == 0
    assert strip(catalog.received) == strip(reference)


def test_connection_reset_and_stall_are_retried(file_output, tmp_path):
    path, reference = file_output
    with CatalogServer() as catalog:
        catalog.reset_first = 2
        report = send_file(path, catalog.url, tmp_path)
    assert report.ok and strip(catalog.received) == strip(reference)
    with CatalogServer() as catalog:
        catalog.stall_first, catalog.stall_seconds = 1, 1.5
        report = send_file(path, catalog.url, tmp_path, timeout_sec=0.5)
    assert report.ok, report.failures
    assert report.delivered == len(reference)
    assert strip(catalog.received) == strip(reference)


def test_one_bad_proposal_in_a_batch_only_it_is_dead_lettered(file_output, tmp_path):
    path, reference = file_output
    bad = next(r for r in reference if r["aspectName"] == "versionProperties")
    reason = "Aspect versionProperties failed validation: versionSet does not exist"
    with CatalogServer() as catalog:
        catalog.reject = lambda r: reason if (r["entityUrn"], r["aspectName"]) == (bad["entityUrn"], "versionProperties") else None
        report = send_file(path, catalog.url, tmp_path)
    assert not report.ok
    assert report.dead_lettered == 1 and report.delivered == len(reference) - 1
    assert report.delivered + report.dead_lettered == report.proposals
    dead = read_proposals(str(tmp_path / "dead.json"))
    assert [(d["entityUrn"], d["aspectName"]) for d in dead] == [(bad["entityUrn"], "versionProperties")]
    reasons = (tmp_path / "dead.json.reasons.jsonl").read_text()
    assert reason in reasons and any(reason in f["message"] for f in report.failures)
    assert strip(catalog.received) == strip([r for r in reference if r is not bad])


def test_server_without_batch_endpoint_gets_single_proposals(file_output, tmp_path):
    path, reference = file_output
    with CatalogServer() as catalog:
        catalog.no_batch_endpoint = True
        report = send_file(path, catalog.url, tmp_path)
    assert report.ok and strip(catalog.received) == strip(reference)
    singles = [r for r in catalog.requests if r["path"] == "/aspects?action=ingestProposal"]
    assert len(singles) == len(reference)


@pytest.mark.server
def test_rejected_token_is_clear_nonzero_and_loses_nothing(seeded_server, file_output, write_recipe, tmp_path):
    url, _, _ = seeded_server
    _, reference = file_output
    with CatalogServer(token="the-right-one") as catalog:
        recipe = write_recipe(json.dumps({
            "source": {"type": "mlflow", "config": {"tracking_uri": url}},
            "sink": rest_sink(catalog.url, tmp_path, token=TOKEN)}))
        report_file = tmp_path / "report.json"
        proc = subprocess.run(CLI + ["ingest", "-c", str(recipe), "--report-file", str(report_file)],
                              capture_output=True, text=True, timeout=300)
        check = subprocess.run(CLI + ["check", "-c", str(recipe)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"token rejected by {catalog.url}" in proc.stderr
    report = json.loads(report_file.read_text())
    dead = read_proposals(str(tmp_path / "dead.json"))
    assert report["delivered"] == 0 and report["dead_lettered"] == len(dead) == report["proposals"]
    assert report["proposals"] <= len(reference) and catalog.received == []
    assert check.returncode == 1 and f"token rejected by {catalog.url}" in check.stdout
    for text in (proc.stdout, proc.stderr, report_file.read_text(), (tmp_path / "dead.json").read_text(),
                 (tmp_path / "dead.json.reasons.jsonl").read_text(), check.stdout, check.stderr):
        assert TOKEN not in text


@pytest.mark.server
def test_server_gone_mid_run_then_resend_the_dead_letters(seeded_server, file_output, write_recipe, tmp_path):
    url, _, _ = seeded_server
    _, reference = file_output
    with CatalogServer() as catalog:
        catalog.gone_after = 2
        recipe = write_recipe(json.dumps({
            "source": {"type": "mlflow", "config": {"tracking_uri": url}},
            "sink": rest_sink(catalog.url, tmp_path, max_in_flight=1)}))
        report_file = tmp_path / "gone.report.json"
        proc = subprocess.run(CLI + ["ingest", "-c", str(recipe), "--report-file", str(report_file)],
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "did not take proposals" in proc.stderr
    report = json.loads(report_file.read_text())
    assert report["proposals"] == report["delivered"] + report["dead_lettered"]  # nothing lost
    delivered = list(catalog.received)
    dead = read_proposals(str(tmp_path / "dead.json"))
    assert len(delivered) == 100  # two batches of 50 went through
    assert len(delivered) + len(dead) <= len(reference)
    # re-send the dead letters to a server that is back: together, nothing was lost of what was produced
    with CatalogServer() as back:
        resend_recipe = write_recipe(json.dumps({"source": {"type": "mlflow"},
                                                 "sink": rest_sink(back.url, tmp_path / "again")}), "again.yml")
        proc = subprocess.run(CLI + ["send", str(tmp_path / "dead.json"), "-c", str(resend_recipe)],
                              capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    produced = strip(delivered + back.received)
    assert len(produced) == len(delivered) + len(dead)
    assert set(produced) <= set(strip(reference))


def test_send_with_a_rejected_token_dead_letters_every_record_and_resend_empties_it(file_output, tmp_path):
    path, reference = file_output
    dead = tmp_path / "dead.json"
    with CatalogServer(token=TOKEN) as catalog:
        catalog.stall_first, catalog.stall_seconds = 2, 0.3  # the source keeps producing meanwhile
        report = send_file(path, catalog.url, tmp_path, token="wrong-token", max_batch_size=10, max_in_flight=1)
    assert not report.ok and catalog.received == []
    assert len(read_proposals(str(dead))) == len(reference) == report.proposals == report.dead_lettered
    # an earlier run's dead letters are kept when a later run dead-letters more
    with CatalogServer(token=TOKEN) as catalog:
        catalog.reject = lambda r: "bad" if r["aspectName"] == "subTypes" else None
        report = send_file(path, catalog.url, tmp_path, token=TOKEN)
    subtypes = sum(r["aspectName"] == "subTypes" for r in reference)
    assert report.dead_lettered == subtypes
    # ... and a proposal dead-lettered again is in the file once, not once per run
    assert len(read_proposals(str(dead))) == len(reference)
    # re-sending the dead-letter file itself leaves in it only what is still undelivered: nothing
    with CatalogServer(token=TOKEN) as catalog:
        report = send_file(dead, catalog.url, tmp_path, token=TOKEN)
    assert report.ok and len(catalog.received) == len(reference)
    assert read_proposals(str(dead)) == []


@pytest.mark.server
def test_sigterm_mid_run_stops_cleanly_and_keeps_what_was_not_delivered(seeded_server, file_output, write_recipe,
                                                                      tmp_path):
    import signal
    import time

    url, _, _ = seeded_server
    with CatalogServer() as catalog:
        catalog.stall_first, catalog.stall_seconds = 10**6, 0.3
        recipe = write_recipe(json.dumps({
            "source": {"type": "mlflow", "config": {"tracking_uri": url}},
            "sink": rest_sink(catalog.url, tmp_path, max_batch_size=5, max_in_flight=1)}))
        report_file = tmp_path / "term.json"
        proc = subprocess.Popen(CLI + ["ingest", "-c", str(recipe), "--report-file", str(report_file)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(catalog.received) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, out + err
    assert "Interrupted" in err and "Traceback" not in err
    report = json.loads(report_file.read_text())
    dead = read_proposals(str(tmp_path / "dead.json"))
    assert report["dead_lettered"] == len(dead) > 0
    assert report["proposals"] == report["delivered"] + report["dead_lettered"]


def test_basic_credentials_in_the_server_url_are_used_and_never_shown(file_output, tmp_path):
    import base64

    path, reference = file_output
    with CatalogServer() as catalog:
        url = catalog.url.replace("http://", "http://ingest:pa%24%24word@")
        report = send_file(path, url, tmp_path)
        sent = [r for r in catalog.requests if r["method"] == "POST"][0]["headers"]["Authorization"]
    assert report.ok and len(catalog.received) == len(reference)
    assert base64.b64decode(sent.split()[1]).decode() == "ingest:pa$$word"
    assert "pa%24%24word" not in json.dumps(report.as_dict()) and "pa$$word" not in json.dumps(report.as_dict())


@pytest.mark.parametrize("answer", [
    (200, {"status": "ok"}, None),                              # another service at the GMS URL
    (200, b"<html><body>Sign in</body></html>", None),          # a login page (after a redirect)
    (302, {}, {"Location": "/login"}),                          # a redirect not followed
])
def test_an_answer_that_is_not_gms_counts_nothing_as_delivered(file_output, tmp_path, answer):
    from tests.fake_http import ScriptedServer

    path, records = file_output
    with ScriptedServer([answer]) as server:
        report = send_file(path, server.url, tmp_path)
    assert not report.ok and report.delivered == 0
    assert report.dead_lettered == report.proposals == len(records)
    assert len(read_proposals(str(tmp_path / "dead.json"))) == len(records)
    assert any(server.url in f["message"] and ("is `server` DataHub's GMS?" in f["message"]
                                               or "too many redirects" in f["message"]) for f in report.failures)


def test_dead_letters_are_kept_once_and_a_later_good_run_retires_them(seeded_server, tmp_path):
    """A proposal a server keeps refusing is in the file once, however many runs meet it; a run
    that then succeeds sent everything changed since the last good run, so the older dead letters
    (possibly out of date) are moved aside instead of waiting to overwrite newer values."""
    url, _, _ = seeded_server
    with CatalogServer() as gms:
        recipe = parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": url}},
                               "sink": rest_sink(gms.url, tmp_path, max_retries=0)})
        gms.fail_first = 10**6  # down
        first, second = run_ingest(recipe), run_ingest(recipe)
        assert not first.ok and first.dead_lettered == first.proposals == second.dead_lettered
        dead = read_proposals(str(tmp_path / "dead.json"))
        assert len(dead) == first.proposals  # not twice
        gms.fail_first = 0  # back
        third = run_ingest(recipe)
    assert third.ok and third.delivered == third.proposals
    assert not (tmp_path / "dead.json").exists()
    assert len(read_proposals(str(tmp_path / "dead.json.superseded"))) == len(dead)
    assert any(i["title"] == "Dead letters superseded" for i in third.infos)


def test_a_catalogs_multi_line_message_is_one_error_line_without_terminal_escapes(tmp_path):
    """A server's message is echoed into `error:` lines: one line per problem, no control characters."""
    source = tmp_path / "in.json"
    source.write_text(json.dumps(json.loads((GOLDEN / "seeded-0.json").read_text())["proposals"][:5]))
    with CatalogServer() as catalog:
        catalog.reject = lambda record: "bad aspect\nsecond line\x1b[2J\x1b[31m red"
        recipe = tmp_path / "recipe.json"
        recipe.write_text(json.dumps({"source": {"type": "mlflow"}, "sink": rest_sink(catalog.url, tmp_path)}))
        proc = subprocess.run(CLI + ["send", "-c", str(recipe), str(source)], capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == 1
    errors = proc.stderr.splitlines()
    assert errors and all(line.startswith("error: ") for line in errors), proc.stderr
    assert any("bad aspect second line [2J [31m red" in line for line in errors), proc.stderr
    assert "\x1b" not in proc.stderr + proc.stdout
    printed = [line for line in proc.stdout.splitlines() if line.startswith("  - Not delivered: ")]
    assert len(printed) == 5 and all(line.endswith("HTTP 400: bad aspect second line [2J [31m red") for line in printed)
