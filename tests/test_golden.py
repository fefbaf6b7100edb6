"""Behaviour kept: every golden scenario (tests/golden_scenarios.py) replayed from its cassettes
gives exactly the recorded proposals and report figures."""
import json

import pytest

from tests.golden_scenarios import SCENARIOS, run_step, summary


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_replay_matches_the_golden_output(scenario, tmp_path):
    facts = json.loads(scenario.facts.read_text(encoding="utf-8"))
    for index in range(len(scenario.steps)):
        golden = json.loads(scenario.golden(index).read_text(encoding="utf-8"))
        report, output = run_step(scenario, index, facts["tracking_uri"], tmp_path, "none")
        assert summary(report) == golden["summary"], report.failures
        assert len(output) == len(golden["proposals"])
        for position, (got, want) in enumerate(zip(output, golden["proposals"], strict=False)):
            assert got == want, f"{scenario.name} step {index}, proposal {position}"
