"""Each run has its own stop token: stopping one run (SIGTERM in the CLI, Airflow's timeout, a REST
sink giving up) ends that run's waits and no other's, also with two runs in one process."""
import threading
import time

import pytest

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from connector.run_parts import RunOptions
from connector.stopping import Stopped, StopToken
from tests.catalog_server import CatalogServer


def test_a_stop_token_ends_its_own_waits_and_no_others():
    mine, other = StopToken(), StopToken()
    mine.request("stopped by a test")
    started = time.monotonic()
    with pytest.raises(Stopped, match="stopped by a test"):
        mine.sleep(30)
    assert time.monotonic() - started < 1
    other.sleep(0.01)  # not stopped: sleeps and returns
    other.check()
    assert mine.requested() and not other.requested()


def _rest_recipe(name, mlflow_url, gms, tmp_path):
    return parse_recipe({
        "pipeline_name": name,
        "source": {"type": "mlflow", "config": {"tracking_uri": mlflow_url}},
        "sink": {"type": "datahub-rest", "config": {"server": gms.url, "retry_backoff_sec": 0.01,
                                                    "dead_letter_file": str(tmp_path / f"{name}.dead.json")}}})


def _wait_for_a_post(gms, seconds=120.0):
    deadline = time.monotonic() + seconds
    while not any(r["method"] == "POST" for r in list(gms.requests)):
        assert time.monotonic() < deadline, "no proposal reached the catalog"
        time.sleep(0.05)


def test_stopping_one_of_two_runs_in_one_process_leaves_the_other_to_finish(seeded_server, tmp_path):
    url, _, _ = seeded_server
    reports: dict = {}
    stop_a = StopToken()

    def run(name, recipe, options):
        reports[name] = run_ingest(recipe, options)

    with CatalogServer() as gms_a, CatalogServer() as gms_b:
        gms_a.stall_first, gms_a.stall_seconds = 10**6, 30.0  # run a's deliveries hang until it is stopped
        gms_b.stall_first, gms_b.stall_seconds = 2, 1.0        # run b is still delivering when a is stopped
        a = threading.Thread(target=run, args=("a", _rest_recipe("a", url, gms_a, tmp_path), RunOptions(stop=stop_a)))
        b = threading.Thread(target=run, args=("b", _rest_recipe("b", url, gms_b, tmp_path), RunOptions()))
        a.start()
        _wait_for_a_post(gms_a)
        b.start()
        _wait_for_a_post(gms_b)
        stop_a.request("stopped by a test")
        a.join(60)
        b.join(300)
        assert not a.is_alive() and not b.is_alive()
        received_b = {(r["entityUrn"], r["aspectName"]) for r in gms_b.received}
    stopped, finished = reports["a"], reports["b"]
    assert not stopped.ok and stopped.failures[0]["title"] == "Interrupted"
    assert stopped.delivered == 0 and stopped.dead_lettered == stopped.proposals > 0  # nothing lost
    assert finished.ok, finished.failures
    assert finished.proposals > 0 and finished.delivered == finished.proposals and finished.dead_lettered == 0
    assert len(received_b) > 0 and any(urn.startswith("urn:li:mlModelGroup:") for urn, _ in received_b)
    assert gms_b.problems == []
