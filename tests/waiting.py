"""Waiting in tests: for a condition, never for a guessed time."""
from __future__ import annotations

import time
from typing import Callable


def wait_for(condition: Callable[[], object], timeout: float = 30, what: str = "") -> None:
    """Until `condition()` is true; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # the poll interval, not a guess at how long something takes
