"""Adding `platform_instance` to a recipe that already ran: every MLflow object gets a new URN. The
first run after it (through the CLI, against the stand-in GMS) sends the new URNs and removes the
old ones the state knows, past the removal threshold; a broken crawl at that moment removes nothing."""
import json
import subprocess
import sys

import pytest
import yaml

from connector.state.store import compact, expand
from tests.catalog_server import CatalogServer

pytestmark = pytest.mark.server
CLI = [sys.executable, "-m", "connector.cli"]


def ingest(recipe: dict, tmp_path, name: str) -> dict:
    path = tmp_path / f"{name}.yml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    report = tmp_path / f"{name}-report.json"
    proc = subprocess.run(CLI + ["ingest", "-c", str(path), "--report-file", str(report)],
                          capture_output=True, text=True, timeout=300)
    return {"returncode": proc.returncode, "stderr": proc.stderr, **json.loads(report.read_text(encoding="utf-8"))}


def entity_urns(gms: CatalogServer, run_id: str) -> set:
    """The entities a run sent (not those it removed, nor its checkpoint's dataJob)."""
    return {r["entityUrn"] for r in gms.received if r["systemMetadata"]["runId"] == run_id
            and r["entityType"] != "dataJob" and r["aspect"] != {"removed": True}}


def test_adding_platform_instance_removes_the_old_urns_once_the_new_ones_are_there(proxy, tmp_path):
    with CatalogServer() as gms:
        recipe = {"pipeline_name": "east-registry",
                  "source": {"type": "mlflow", "config": {"tracking_uri": proxy.url, "incremental": True}},
                  "sink": {"type": "datahub-rest", "config": {"server": gms.url}},
                  "state": {"path": str(tmp_path / "state.json"), "max_removal_ratio": 0.5}}
        before = ingest(recipe, tmp_path, "before")
        assert before["status"] == "success", before
        old = entity_urns(gms, before["run_id"]) - {u for u in entity_urns(gms, before["run_id"])
                                                    if u.startswith("urn:li:tag:")}  # tags are no MLflow object
        assert len(old) > 15

        recipe["source"]["config"]["platform_instance"] = "east"
        # a broken crawl right then (MLflow answers nothing): no old URN is removed, and the report says why
        proxy.add("experiments/search", "rewrite", rewrite=lambda answer: {})
        proxy.add("registered-models/search", "rewrite", rewrite=lambda answer: {})
        broken = ingest(recipe, tmp_path, "broken")
        assert broken["status"] != "success" and broken["entities_removed"] == 0
        assert any("would remove" in f["message"] for f in broken["failures"]), broken["failures"]
        assert all(gms.store[(u, "status")] == {"removed": False} for u in old)

        proxy.clear()
        after = ingest(recipe, tmp_path, "after")
        assert after["status"] == "success" and after["mode"] == "full", after
        new = entity_urns(gms, after["run_id"])
        assert not new & old and len(new - {u for u in new if u.startswith("urn:li:tag:")}) == len(old)
        assert after["entities_removed"] == len(old)
        assert {u for u in old if gms.store[(u, "status")] != {"removed": True}} == set()
        assert {u for u in new if gms.store[(u, "status")] != {"removed": False}} == set()
        assert all(",east." in u or u.startswith(("urn:li:container:", "urn:li:dataProcessInstance:", "urn:li:tag:"))
                   for u in new)

        state = json.loads((tmp_path / "state.json").read_text(encoding="utf-8"))
        known = expand(state["pipelines"]["east-registry"]["fingerprints"])
        assert set(known) == new and expand(compact(known)) == known  # compaction keeps the new URNs whole
        again = ingest(recipe, tmp_path, "again")  # and the next run is incremental again, with nothing to do
        assert (again["status"], again["mode"], again["proposals"], again["entities_removed"]) == (
            "success", "incremental", 0, 0)


def test_two_recipes_sharing_a_pipeline_name_with_other_instances_remove_nothing_of_each_other(seeded_server, tmp_path):
    """east and west copied from one recipe (same pipeline_name and state): west's run would remove every
    entity of east. It removes nothing and fails saying why; east's next run is as before."""
    def recipe(instance: str) -> dict:
        return {"pipeline_name": "mlflow-prod", "state": {"path": str(tmp_path / "state.json")},
                "source": {"type": "mlflow", "config": {"tracking_uri": seeded_server[0], "platform_instance": instance}},
                "sink": {"type": "file", "config": {"filename": str(tmp_path / f"{instance}.json")}}}

    east = ingest(recipe("east"), tmp_path, "east")
    assert east["returncode"] == 0 and east["entities_removed"] == 0
    west = ingest(recipe("west"), tmp_path, "west")
    assert west["returncode"] == 1 and west["entities_removed"] == 0
    refusal = [f["message"] for f in west["failures"] if f["title"] == "Stale-entity removal refused"]
    assert refusal and "platform_instance 'east'" in refusal[0] and "own pipeline_name" in refusal[0]
    assert not (tmp_path / "west.json").exists()  # a failed run writes no file: nothing removed anywhere
    again = ingest(recipe("east"), tmp_path, "east-again")
    assert again["returncode"] == 0 and again["entities_removed"] == 0
    state = json.loads((tmp_path / "state.json").read_text())["pipelines"]["mlflow-prod"]
    assert state["checkpoint"]["platform_instance"] == "east"
    named = [u for u in expand(state["fingerprints"]) if u.startswith("urn:li:mlModel")]
    assert named and all(",east." in u for u in named) and not any("west" in u for u in named)
