"""A run's stop signal: SIGTERM or Ctrl-C sets it (cli.py), and every wait of the connector
(retry backoff, rate limit, reading an answer, waiting for a batch in flight) ends at once.

Process-wide on purpose: a signal is. `reset()` at the start of each run in this process."""
from __future__ import annotations

import threading

_stop = threading.Event()
_reason = ["stopped"]


class Stopped(BaseException):
    """The run was told to stop (SIGTERM, SIGINT). A BaseException, like KeyboardInterrupt: no
    `except Exception` meant for bad data may swallow it."""


class StopToken:
    """One run's stop signal (placeholder until the per-run token is wired)."""

    def requested(self) -> bool:
        return requested()


def request_stop(reason: str = "stopped") -> None:
    _reason[0] = reason
    _stop.set()


def reset() -> None:
    _stop.clear()


def requested() -> bool:
    return _stop.is_set()


def check() -> None:
    if _stop.is_set():
        raise Stopped(_reason[0])


def sleep(seconds: float) -> None:
    """Sleep, or raise Stopped as soon as a stop is requested."""
    if _stop.wait(max(0.0, seconds)):
        raise Stopped(_reason[0])
