"""State that cannot go blind (issue 11): a run dated 2100, a checkpoint in the future, pipelines
sharing a state file, lock names; incremental runs with the file sink. A real `mlflow server` of
its own (runs are added to it)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from connector.sinks.file import read_proposals
from tests.unattended_kit import file_sink, temp_files

pytestmark = pytest.mark.server

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
    from connector.config.recipe import parse_recipe

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


def test_two_names_with_the_same_32_bit_hash_get_different_locks():
    """Lock names carry a 64-bit hash: names crafted to collide on 32 bits (a birthday search finds a
    pair in ~100,000 tries) still get locks of their own."""
    import hashlib

    from connector.state.lock import lock_name

    seen: dict[bytes, str] = {}
    for i in range(1_000_000):
        name = f"p{i}"
        short = hashlib.blake2b(name.encode(), digest_size=4).digest()
        if short in seen:
            break
        seen[short] = name
    else:
        pytest.fail("no 32-bit collision found")
    first, second = seen[short], name
    assert lock_name(first) != lock_name(second)
    assert len(lock_name(first).rsplit("-", 1)[1]) == 16  # 64 bits


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
