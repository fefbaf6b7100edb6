"""Which stored checkpoint values are current, without trusting any machine's clock.

Every value names itself (`messageId`) and the values it was made from (`basedOn`, kept with its
`sequence` in the aspect's `config` as JSON). A value some other value was made from is history;
the rest are the current ones ("heads"): one after runs that saw each other's saves, several when
runs saved without seeing each other (two machines at once, or a value GMS had not indexed yet).
Values of an older release carry no lineage: the newest of them stands for all of them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class StoredValue:
    id: str
    sequence: int
    timestamp: int
    based_on: frozenset
    aspect: dict  # the aspect as GMS answered it; its state is decoded only when needed
    legacy: bool = False


def lineage_config(sequence: int, based_on: Iterable[str]) -> str:
    return json.dumps({"sequence": sequence, "basedOn": sorted(based_on)}, separators=(",", ":"))


def stored_value(aspect: dict) -> StoredValue:
    timestamp = int(aspect.get("timestampMillis") or 0)
    try:
        lineage = json.loads(aspect.get("config") or "null")
    except ValueError:
        lineage = None
    if isinstance(lineage, dict) and aspect.get("messageId") and isinstance(lineage.get("sequence"), int):
        return StoredValue(str(aspect["messageId"]), lineage["sequence"], timestamp,
                           frozenset(str(i) for i in lineage.get("basedOn") or ()), aspect)
    return StoredValue(f"legacy-{timestamp}-{aspect.get('runId') or ''}", 0, timestamp, frozenset(), aspect, True)


def heads(values: list[StoredValue]) -> list[StoredValue]:
    """The current values among `values`, newest sequence first."""
    legacy = sorted((v for v in values if v.legacy), key=lambda v: v.timestamp, reverse=True)
    history = {i for v in values for i in v.based_on} | {v.id for v in legacy[1:]}
    return sorted((v for v in values if v.id not in history), key=lambda v: (v.sequence, v.timestamp), reverse=True)


def next_position(values: list[StoredValue], known: list[tuple[int, int]], now_ms: int) -> tuple[int, int]:
    """(sequence, timestampMillis) of the next value: past every value seen and every (sequence,
    timestamp) `known` otherwise, whatever the clocks said."""
    sequence = max([v.sequence for v in values] + [k[0] for k in known] + [0])
    newest = max([v.timestamp for v in values] + [k[1] for k in known] + [0])
    return sequence + 1, max(now_ms, newest + 1)
