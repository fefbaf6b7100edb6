"""Has DataHub's sink delivered everything? Asked in DataHub's commit step, before our state is saved.

DataHub runs the commit step after `sink.flush()`, and skips it when the source or the sink
reported a failure. acryl-datahub 1.7's `datahub-rest` sink does not implement `flush()`: in its
default ASYNC_BATCH (and ASYNC) mode the last batches are still queued or on the wire at the
commit step (a partial batch waits up to `min_process_interval_seconds`, 30 s), and a batch GMS
refuses is reported only afterwards. So the plugin drains the sink's executor itself and reads
its failures then: ASYNC has `flush()`; ASYNC_BATCH has none (and must not be shut down: DataHub's
run-summary reporter still writes through it), so its wait for a partial batch is set to zero
while the plugin waits for the pending requests (the batcher looks again within 3 s). In SYNC mode
that sink never reports a failed write at all, so `parse_config` refuses SYNC together with `state`.

The sink is not reachable from the source's PipelineContext; the commit step is called by the
running `Pipeline` (`process_commits`), so it is taken from the calling frames. When it cannot be
found (another caller), DataHub's own gate is all there is.
"""
from __future__ import annotations

import sys
import time
from datetime import timedelta
from types import FrameType
from typing import Any, Optional

from datahub.ingestion.run.pipeline import Pipeline

WAIT_SEC = 600.0


def running_pipeline_sink() -> Optional[Any]:
    frame: Optional[FrameType] = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, Pipeline):
            return candidate.sink
        frame = frame.f_back
    return None


def undelivered(sink: Any, wait_sec: float = WAIT_SEC) -> list[str]:
    """Why not everything was delivered (empty: all delivered), once the sink's requests are done."""
    executor: Any = getattr(sink, "executor", None)
    if hasattr(executor, "flush"):
        executor.flush()
    batch_wait = getattr(executor, "min_process_interval", None)
    if batch_wait is not None:
        executor.min_process_interval = timedelta(0)
    report = sink.get_report()
    deadline = time.monotonic() + wait_sec
    try:
        while getattr(report, "pending_requests", 0) > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        if batch_wait is not None:
            executor.min_process_interval = batch_wait
    problems = [str(failure) for failure in report.failures]
    pending = getattr(report, "pending_requests", 0)
    if pending > 0:
        problems.append(f"{pending} write(s) still pending after {wait_sec:.0f} s")
    return problems
