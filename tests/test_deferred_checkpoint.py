"""The plugin's pending checkpoint (connector/integrations/deferred_checkpoint.py), without DataHub's
pipeline: saved when the evidence confirms delivery, dropped (and the run goes on) otherwise."""
import json

from connector.integrations.deferred_checkpoint import DeferredCheckpoint
from connector.config.recipe import StateConfig
from connector.state.store import PipelineState, StateFile


def run_once(state_path, checkpoint, confirm=lambda evidence: None):
    """begin (settling the last pending state), stage CHECKPOINT, keep it pending."""
    staged = DeferredCheckpoint(StateConfig(path=str(state_path)), "p")
    staged.begin(confirm)
    staged.end_crawl()
    staged.staged.save("p", PipelineState(checkpoint=checkpoint))
    pending = staged.promote(pending_evidence={"kind": "file", "datahub_run_id": f"run-{checkpoint['n']}"})
    staged.discard()
    return staged, pending


def test_a_pending_checkpoint_is_saved_only_when_confirmed(tmp_path):
    state_path = tmp_path / "state.json"
    first, pending = run_once(state_path, {"n": 1})
    assert pending == {"n": 1} and StateFile(state_path).load("p").checkpoint == {}
    assert first.pending_path.exists()

    seen = []
    second, _ = run_once(state_path, {"n": 2}, confirm=lambda evidence: seen.append(evidence) or "not in the file")
    assert seen == [{"kind": "file", "datahub_run_id": "run-1"}]
    assert "run-1 is not confirmed as delivered (not in the file)" in second.pending_outcome
    assert StateFile(state_path).load("p").checkpoint == {}  # dropped: the changes are sent again

    third, _ = run_once(state_path, {"n": 3})
    assert third.confirmed == {"n": 2} and StateFile(state_path).load("p").checkpoint == {"n": 2}


def test_a_garbled_pending_file_is_dropped_not_fatal(tmp_path):
    state_path = tmp_path / "state.json"
    first, _ = run_once(state_path, {"n": 1})
    first.pending_path.write_text(json.dumps({"evidence": {}, "state": {"checkpoint": "not a mapping"}}))
    second, pending = run_once(state_path, {"n": 2})
    assert "is not a pending state" in second.pending_outcome and pending == {"n": 2}
    assert StateFile(state_path).load("p").checkpoint == {}
