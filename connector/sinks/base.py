"""The sink interface: write proposals as they come, then commit or abort."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

from connector.mapping.common import Mcp


class SinkError(Exception):
    """A sink could not deliver; the message says where and why (never a secret)."""


@dataclass
class SinkResult:
    delivered: int = 0
    failed: int = 0
    dead_letter_file: Optional[str] = None
    messages: list[str] = field(default_factory=list)  # what went wrong, for the report
    error: Optional[str] = None  # the sink itself failed (e.g. dead letters not written)
    # set when the only proposals not delivered are ones the server refused for good: their entities
    only_refused: Optional[frozenset] = None


def to_wire(proposal: Mcp, system_metadata: dict) -> dict:
    """The MCP in the catalog's JSON form, aspect still a dict (sinks encode it)."""
    return {
        "entityType": proposal.entity_type,
        "entityUrn": proposal.entity_urn,
        "changeType": "UPSERT",
        "aspectName": proposal.aspect_name,
        "aspect": proposal.aspect,
        "systemMetadata": system_metadata,
    }


class Sink(Protocol):
    name: str
    output: Optional[str]        # the file written, for the report; None for a server
    delivers_as_it_goes: bool    # True: what `flush` returned from is delivered (a crawl can resume)

    def write(self, proposal: Mcp, system_metadata: dict) -> None:
        """Accept one proposal; may buffer or deliver asynchronously."""

    def flush(self) -> None:
        """Return once everything written so far is delivered or kept (dead letters on disk)."""

    def commit(self) -> SinkResult:
        """Deliver everything still pending; the run succeeded as far as the source goes."""

    def abort(self) -> SinkResult:
        """The run failed before the end: keep what must not be lost, publish nothing half-done."""

    def dead_letter_unsent(self, proposal: Mcp, system_metadata: dict, reason: str) -> None:
        """A proposal the caller could no longer write (the sink failed): keep it with the rest."""

    def resending(self, filename: str) -> None:
        """The proposals written next are re-sent from `filename` (see `mlflow-catalog send`)."""
