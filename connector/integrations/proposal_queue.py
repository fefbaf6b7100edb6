"""Our pipeline in a worker thread, its proposals handed over a bounded queue to a consumer
that pulls them (DataHub's ingestion loop pulls work units from a generator).

The queue is bounded, so the crawl never runs further ahead of the consumer than
`max_pending` proposals (memory stays flat). Proposals cross in batches of `BATCH`: one lock
round trip and one thread wake-up per batch, not per proposal (the crawl's pages come in bursts
of thousands, so a batch fills at once); a checkpoint and the end of the run hand over the rest.
When the consumer stops pulling (`stop()`: a preview, an error downstream, the source being
closed), the next hand-over raises SinkError; `run_ingest` reports it as a failure and returns,
and the thread ends.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterator, Optional

from connector.mapping.common import Mcp
from connector.report import Report
from connector.sinks.base import SinkError, SinkResult

_DONE = object()
MAX_LISTED_REJECTIONS = 100
BATCH = 100


class QueueSink:
    """The sink `run_ingest` writes to: converts each proposal and puts it on the proposal queue.
    A proposal `convert` cannot take is not handed over; it is counted and its reason kept."""

    name = "datahub-ingest"
    output: Optional[str] = None
    delivers_as_it_goes = False  # DataHub's sink delivers; a checkpoint waits for its commit

    def __init__(self, queue: "ProposalQueue", convert: Callable[[Mcp, dict], Any]):
        self._queue = queue
        self._convert = convert
        self.handed_over = 0
        self.rejected = 0
        self.rejections: list[str] = []
        self._batch: list = []

    def write(self, proposal: Mcp, system_metadata: dict) -> None:
        try:
            item = self._convert(proposal, system_metadata)
        except Exception as exc:  # one proposal the catalog's classes refuse must not sink the run
            self.rejected += 1
            if len(self.rejections) < MAX_LISTED_REJECTIONS:
                self.rejections.append(f"{proposal.entity_urn} {proposal.aspect_name}: {type(exc).__name__}: {exc}")
            return
        self._batch.append(item)
        if len(self._batch) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Hand over what is batched (a checkpoint: everything so far is the consumer's)."""
        batch, self._batch = self._batch, []
        if batch:
            self._queue.put(batch)
            self.handed_over += len(batch)

    def dead_letter_unsent(self, proposal: Mcp, system_metadata: dict, reason: str) -> None:
        self.rejected += 1

    def resending(self, filename: str) -> None:
        pass

    def commit(self) -> SinkResult:
        self.flush()
        return SinkResult(delivered=self.handed_over, failed=self.rejected)

    def abort(self) -> SinkResult:
        # What was made before the failure still goes to DataHub's pipeline, as it would have gone one
        # by one; once handed over it is the pipeline's, nothing is held here to keep.
        try:
            self.flush()
        except SinkError:  # the consumer stopped: the batch is not handed over
            pass
        return SinkResult(delivered=self.handed_over, failed=self.rejected)


class ProposalQueue:
    def __init__(self, run: Callable[[QueueSink], Report], convert: Callable[[Mcp, dict], Any],
                 max_pending: int = 2000):
        self._run = run
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, max_pending // BATCH))
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._work, name="mlflow-catalog-crawl", daemon=True)
        self.sink = QueueSink(self, convert)
        self.report: Optional[Report] = None
        self.error: Optional[BaseException] = None
        self.finished = False  # the consumer took everything up to the end of the run

    def start(self) -> None:
        self._thread.start()

    def _work(self) -> None:
        try:
            self.report = self._run(self.sink)
        except BaseException as exc:  # run_ingest reports its own failures; this is a bug or LockHeld
            self.error = exc
        finally:
            try:
                self._queue.put(_DONE, timeout=0 if self._stopped.is_set() else None)
            except queue.Full:  # stopped: nobody takes from the queue any more
                pass

    def put(self, batch: list) -> None:
        while True:
            if self._stopped.is_set():
                raise SinkError("DataHub's pipeline stopped taking work units before the end of the crawl")
            try:
                self._queue.put(batch, timeout=0.2)
                return
            except queue.Full:
                continue

    def items(self) -> Iterator[Any]:
        """Every item in order; returns once the run has ended (`report` or `error` is set)."""
        while True:
            batch = self._queue.get()
            if batch is _DONE:
                self._thread.join()
                self.finished = True
                return
            yield from batch

    def stop(self, timeout: float = 60.0) -> None:
        """The consumer takes nothing more: unblock the crawl, let it end, wait for the thread."""
        self._stopped.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread.is_alive():
            self._thread.join(timeout)
