"""The catalog-backed state across machines (issue 18), against a stand-in GMS that, like real GMS,
indexes timeseries values asynchronously: no machine's clock orders the checkpoints, a save never
hides another run's work, and a state server that is not GMS is refused."""
from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from connector.sinks.gms_client import GmsClient, GmsSettings
from connector.state import catalog_store
from connector.state.catalog_store import ASPECT, GmsStateStore
from connector.state.merge import RESEND, merge_fingerprints, merge_states
from connector.state.store import PipelineState, StateError
from tests.catalog_server import CatalogServer
from tests.expectations import run_urn
from tests.fake_http import ScriptedServer
from tests.waiting import wait_for

CHECKPOINT_URN = "urn:li:dataJob:(urn:li:dataFlow:(datahub,fleet-a,prod),mlflow_catalog_state)"
DAY_MS = 24 * 3600 * 1000


def a_state(run: str, fingerprints: dict) -> PipelineState:
    return PipelineState(checkpoint={"runs_started_until": 1000, "run_id": run, "mode": "incremental"},
                         config_hash="cafe", fingerprints=dict(fingerprints))


def store_of(gms: CatalogServer) -> GmsStateStore:
    return GmsStateStore(GmsClient(GmsSettings(server=gms.url)))


def stored(gms: CatalogServer) -> list[dict]:
    """Every checkpoint value GMS holds, indexed or not, newest timestampMillis first."""
    docs = gms.timeseries.get((CHECKPOINT_URN, ASPECT), {}).values()
    return sorted((d[0] for d in docs), key=lambda a: a["timestampMillis"], reverse=True)


def test_merge_keeps_what_either_side_knows_and_resends_what_they_disagree_on():
    base = {"kept": "1", "mine-changed": "1", "their-changed": "1", "both-changed": "1",
            "i-removed": "1", "they-removed": "1", "i-removed-they-changed": "1"}
    mine = {"kept": "1", "mine-changed": "2", "their-changed": "1", "both-changed": "2",
            "they-removed": "1", "i-removed-they-changed": None, "mine-new": "1"}
    theirs = {"kept": "1", "mine-changed": "1", "their-changed": "3", "both-changed": "3",
              "i-removed": "1", "i-removed-they-changed": "3", "their-new": "1"}
    merged = merge_fingerprints(base, {k: v for k, v in mine.items() if v}, theirs)
    assert merged == {"kept": "1", "mine-changed": "2", "their-changed": RESEND, "both-changed": RESEND,
                      "they-removed": RESEND, "i-removed-they-changed": RESEND, "mine-new": "1", "their-new": "1"}


def test_merge_keeps_the_pending_removals_and_dirty_runs_either_side_left_undone():
    base = PipelineState(pending_removals=["u:delivered-by-me", "u:still-pending"], dirty_runs=["r-done", "r-old"])
    mine = PipelineState(pending_removals=["u:still-pending", "u:refused-mine"], dirty_runs=["r-old"])
    theirs = PipelineState(pending_removals=["u:delivered-by-me", "u:still-pending", "u:refused-theirs"],
                           dirty_runs=["r-done", "r-old", "r-theirs"])
    merged = merge_states(base, mine, theirs)
    assert merged.pending_removals == ["u:refused-mine", "u:refused-theirs", "u:still-pending"]
    assert merged.dirty_runs == ["r-old", "r-theirs"]


def test_a_writer_whose_clock_is_a_day_ahead_hides_no_later_save(monkeypatch):
    """The value written a day ahead stays below the next one: timestampMillis only grows."""
    from datahub.ingestion.graph.client import DataHubGraph, DatahubClientConfig
    from datahub.metadata.schema_classes import DatahubIngestionCheckpointClass

    with CatalogServer() as gms:
        gms.index_after_reads = 1  # each value is missed by the first read after its write
        ahead = SimpleNamespace(time=lambda: time.time() + 86400, monotonic=time.monotonic)
        monkeypatch.setattr(catalog_store, "time", ahead)
        machine_a = store_of(gms)
        machine_a.load("fleet-a")
        machine_a.save("fleet-a", a_state("run-a", {run_urn("r1"): "1"}))
        monkeypatch.undo()
        machine_b = store_of(gms)
        assert machine_b.load("fleet-a").checkpoint["run_id"] == "run-a"  # waited for the index
        machine_b.save("fleet-a", a_state("run-b", {run_urn("r1"): "1", run_urn("r2"): "1"}))
        assert store_of(gms).load("fleet-a") == a_state("run-b", {run_urn("r1"): "1", run_urn("r2"): "1"})
        newest, older = stored(gms)
        assert (newest["runId"], older["runId"]) == ("run-b", "run-a")
        assert newest["timestampMillis"] == older["timestampMillis"] + 1 > time.time() * 1000 + DAY_MS - 60_000
        assert json.loads(newest["config"])["sequence"] == json.loads(older["config"])["sequence"] + 1 == 2
        graph = DataHubGraph(DatahubClientConfig(server=gms.url))
        latest = graph.get_latest_timeseries_value(CHECKPOINT_URN, DatahubIngestionCheckpointClass,
                                                   {"pipelineName": "fleet-a"})
        assert latest.runId == "run-b"  # DataHub's own client reads our newest value too
        assert gms.problems == []


def test_a_run_whose_starting_checkpoint_is_no_longer_the_newest_merges_instead_of_overwriting():
    start = {run_urn("r1"): "1", run_urn("gone"): "1"}
    with CatalogServer() as gms:
        gms.index_after_reads = 1
        store_of(gms).save("fleet-a", a_state("run-0", start))
        machine_a, machine_b = store_of(gms), store_of(gms)
        machine_a.load("fleet-a")
        machine_b.load("fleet-a")
        machine_b.save("fleet-a", a_state("run-b", {**start, run_urn("sent-by-b"): "1"}))  # the faster run
        machine_a.save("fleet-a", a_state("run-a", {run_urn("r1"): "1"}))  # saw `gone` deleted
        merged = store_of(gms).load("fleet-a")
    assert merged.fingerprints == {run_urn("r1"): "1", run_urn("sent-by-b"): "1"}
    assert merged.checkpoint["run_id"] == "run-a" and merged.checkpoint["merged_with"] == ["run-b"]
    assert [json.loads(v["config"])["sequence"] for v in stored(gms)] == [3, 2, 1]


def test_saves_that_did_not_see_each_other_are_merged_by_the_next_load(monkeypatch):
    """GMS had indexed neither value when the other run saved: both stay current until a load
    merges them (and its save names both, so they are history from then on)."""
    monkeypatch.setattr(catalog_store, "INDEX_WAIT_SEC", 0.3)
    with CatalogServer() as gms:
        store_of(gms).save("fleet-a", a_state("run-0", {run_urn("r1"): "1"}))
        machine_a, machine_b = store_of(gms), store_of(gms)
        machine_a.load("fleet-a")
        machine_b.load("fleet-a")
        gms.index_delay_sec = 1.5
        machine_a.save("fleet-a", a_state("run-a", {run_urn("r1"): "1", run_urn("a"): "1"}))
        machine_b.save("fleet-a", a_state("run-b", {run_urn("r1"): "1", run_urn("b"): "1"}))
        gms.index_delay_sec = 0
        wait_for(gms.all_indexed, timeout=10, what="GMS to index both saves")
        later = store_of(gms)
        state = later.load("fleet-a")
        assert state.fingerprints == {run_urn("r1"): "1", run_urn("a"): "1", run_urn("b"): "1"}
        later.save("fleet-a", state)
        newest = stored(gms)[0]
        assert len(json.loads(newest["config"])["basedOn"]) == 2
        assert store_of(gms).load("fleet-a") == state


@pytest.mark.parametrize("answer", [
    (200, {"ok": True}, None),                                 # another service answering JSON
    (200, b"<html><body>Sign in</body></html>", None),         # a login page (after a redirect)
    (200, {}, None),
], ids=["json", "login-page", "empty-object"])
def test_a_state_server_that_is_not_gms_is_refused(answer):
    with ScriptedServer([answer]) as fake:
        store = GmsStateStore(GmsClient(GmsSettings(server=fake.url)))
        with pytest.raises(StateError, match=r"is the state server DataHub's GMS\?") as load:
            store.load("fleet-a")
        with pytest.raises(StateError, match=r"is the state server DataHub's GMS\?"):
            store.check_server()
        with pytest.raises(StateError, match=r"GMS"):
            store.save("fleet-a", a_state("run-a", {}))
    assert "\n" not in str(load.value)
    assert not any(r["path"].startswith("/aspects?action=ingestProposal") for r in fake.requests)


def test_values_of_an_older_release_are_read_and_then_continued():
    """Values without lineage (written before this release): the newest of them is the state, as
    that release read it; the next save names it, so it is history from then on."""
    old = GmsStateStore(GmsClient(GmsSettings(server="http://unused")))
    with CatalogServer() as gms:
        store = store_of(gms)
        for n, when in ((1, 1000), (2, 2000)):
            aspect = catalog_store.checkpoint_aspect("fleet-a", a_state(f"old-{n}", {run_urn(f"r{n}"): "1"}),
                                                     f"old-{n}", when)
            store._ingest(old.urn("fleet-a"), ASPECT, aspect, when, f"old-{n}")
        assert store.load("fleet-a") == a_state("old-2", {run_urn("r2"): "1"})
        store.save("fleet-a", a_state("new", {run_urn("r2"): "1", run_urn("r3"): "1"}))
        assert store_of(gms).load("fleet-a") == a_state("new", {run_urn("r2"): "1", run_urn("r3"): "1"})
        assert json.loads(stored(gms)[0]["config"])["basedOn"] == ["legacy-2000-old-2"]
