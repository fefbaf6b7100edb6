"""A run's stop token: SIGTERM or Ctrl-C (cli.py), Airflow's execution_timeout, or a REST sink
that gives up its delivery set it, and every wait of that run (retry backoff, rate limit, reading
an answer, waiting for a batch in flight) ends at once.

One token per run, handed down with the run's parts (the HTTP settings carry it to every client):
two runs in one process (DataHub's Pipeline API, tests, an Airflow worker) do not stop each other."""
from __future__ import annotations

import threading


class Stopped(BaseException):
    """The run was told to stop (SIGTERM, SIGINT). A BaseException, like KeyboardInterrupt: no
    `except Exception` meant for bad data may swallow it."""


class StopToken:
    def __init__(self) -> None:
        self._event = threading.Event()
        self._reason = "stopped"

    def __repr__(self) -> str:
        return f"StopToken({'stopped: ' + self._reason if self.requested() else 'running'})"

    def request(self, reason: str = "stopped") -> None:
        if not self._event.is_set():
            self._reason = reason
        self._event.set()

    def requested(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Stopped(self._reason)

    def sleep(self, seconds: float) -> None:
        """Sleep, or raise Stopped as soon as a stop is requested."""
        if self._event.wait(max(0.0, seconds)):
            raise Stopped(self._reason)
