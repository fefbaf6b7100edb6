"""The sink of a dry run: the crawl and the mapping run in full, nothing is written anywhere."""
from __future__ import annotations

from typing import Optional

from connector.mapping.common import Mcp
from connector.sinks.base import SinkResult


class DryRunSink:
    """--dry-run: takes every proposal and keeps none."""

    name = "dry-run"
    output: Optional[str] = None
    delivers_as_it_goes = False

    def write(self, proposal: Mcp, system_metadata: dict) -> None:
        pass

    def flush(self) -> None:
        pass

    def commit(self) -> SinkResult:
        return SinkResult()

    def abort(self) -> SinkResult:
        return SinkResult()

    def dead_letter_unsent(self, proposal: Mcp, system_metadata: dict, reason: str) -> None:
        pass

    def resending(self, filename: str) -> None:
        pass

