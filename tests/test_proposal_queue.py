"""The plugin's hand-over from our crawl's thread to DataHub's loop: proposals cross in batches,
in order, all of them by the end of the run, what is batched at a checkpoint at once, and a
consumer that stops never leaves the crawl's thread hanging."""
import threading

from connector.integrations.proposal_queue import BATCH, ProposalQueue
from connector.mapping.common import Mcp
from connector.report import Report
from connector.sinks.base import SinkError

SYSTEM_METADATA = {"lastObserved": 1, "runId": "r"}


def proposal(i: int) -> Mcp:
    return Mcp(f"urn:li:tag:t{i}", "status", {"removed": False})


def writing(count: int, outcome: dict):
    """A run that writes `count` proposals as run_ingest does: it ends at the first SinkError,
    and otherwise commits."""
    def run(sink) -> Report:
        try:
            for i in range(count):
                sink.write(proposal(i), SYSTEM_METADATA)
            outcome["result"] = sink.commit()
        except SinkError as exc:
            outcome["error"] = str(exc)
            outcome["result"] = sink.abort()
        return Report()
    return run


def test_every_proposal_arrives_in_order_when_the_count_is_not_a_multiple_of_the_batch():
    count = 2 * BATCH + 37
    outcome: dict = {}
    hand_over = ProposalQueue(writing(count, outcome), lambda p, s: p.entity_urn)
    hand_over.start()
    assert list(hand_over.items()) == [f"urn:li:tag:t{i}" for i in range(count)]
    assert hand_over.finished and hand_over.report is not None and hand_over.error is None
    assert (outcome["result"].delivered, outcome["result"].failed) == (count, 0)


def test_a_checkpoint_hands_over_what_is_batched_at_once():
    checkpoint_taken = threading.Event()

    def run(sink) -> Report:
        for i in range(5):
            sink.write(proposal(i), SYSTEM_METADATA)
        sink.flush()  # run_ingest's checkpoint
        # the consumer must see the five before the run goes on (bounded: the test fails, not hangs)
        assert checkpoint_taken.wait(30), "the checkpoint's proposals were not handed over"
        sink.commit()
        return Report()

    hand_over = ProposalQueue(run, lambda p, s: p.entity_urn)
    hand_over.start()
    taken = []
    for item in hand_over.items():
        taken.append(item)
        if len(taken) == 5:
            checkpoint_taken.set()
    assert len(taken) == 5 and hand_over.error is None


def test_a_consumer_that_stops_ends_the_crawl_without_taking_everything():
    outcome: dict = {}
    hand_over = ProposalQueue(writing(100 * BATCH, outcome), lambda p, s: p.entity_urn, max_pending=2 * BATCH)
    hand_over.start()
    taken = 0
    for _ in hand_over.items():
        taken += 1
        if taken == BATCH + 10:
            break
    hand_over.stop(timeout=30)
    assert not hand_over.finished
    assert "stopped taking work units" in outcome["error"]
    # handed over at most: the two batches taken, the two the queue holds, and one put that found
    # room while stop() emptied the queue
    assert outcome["result"].delivered <= 5 * BATCH
    assert outcome["result"].delivered < 100 * BATCH


def test_a_proposal_the_conversion_refuses_is_counted_and_named_not_handed_over():
    outcome: dict = {}

    def convert(p: Mcp, s: dict) -> str:
        if p.entity_urn.endswith("t3"):
            raise ValueError("not readable")
        return p.entity_urn

    hand_over = ProposalQueue(writing(10, outcome), convert)
    hand_over.start()
    assert len(list(hand_over.items())) == 9
    assert (outcome["result"].delivered, outcome["result"].failed) == (9, 1)
    assert hand_over.sink.rejections == ["urn:li:tag:t3 status: ValueError: not readable"]
