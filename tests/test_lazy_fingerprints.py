"""Fingerprints (hashes of the MLflow data behind each entity) are only for runs with state: a
crawl without a state section computes none, one with state computes them for every entity."""
import json

import pytest

from connector.mapping import catalog_entities
from tests.golden_scenarios import SCENARIOS, run_step

BY_NAME = {scenario.name: scenario for scenario in SCENARIOS}


@pytest.mark.parametrize("name, with_state", [("seeded", False), ("incremental", True)])
def test_fingerprints_only_computed_when_state_uses_them(name, with_state, tmp_path, monkeypatch):
    hashed: list[str] = []
    real = catalog_entities.run_fingerprint
    monkeypatch.setattr(catalog_entities, "run_fingerprint", lambda record: hashed.append(record.run.run_id) or real(record))
    scenario = BY_NAME[name]
    facts = json.loads(scenario.facts.read_text(encoding="utf-8"))
    report, output = run_step(scenario, 0, facts["tracking_uri"], tmp_path, "none")
    runs = {p["entityUrn"] for p in output if p["entityType"] == "dataProcessInstance"}
    assert report.ok and runs
    assert len(hashed) == (len(runs) if with_state else 0)
