"""When has DataHub's sink delivered a run? Decides when the plugin may save its checkpoint.

DataHub's `Pipeline` calls `sink.flush()` ("block until all buffered/in-flight writes are
delivered") and then runs the commit step, which skips our committable when the source or
the sink reported a failure. That answers the question only for sinks whose writes are done
(and their failures reported) by then:
- sinks that implement `flush()` (acryl-datahub 1.7: `datahub-kafka`; any sink that adds it later);
- sinks that write synchronously and report a failed write at once (`datahub-lite`, `console`).
Two sinks of acryl-datahub 1.7 deliver after the commit step, in `close()`:
- `file` keeps every record in memory and writes the file in `close()` (a full disk fails there);
- `datahub-rest` has no `flush()`: its last batches are sent, and refused, in `close()`.
For these the commit step keeps the run's checkpoint *pending* (deferred_checkpoint.py) with the
evidence named here; the next run confirms it against that evidence before it starts (the file
holds this DataHub run's records; GMS holds every aspect as sent) or drops it, and then sends
the changes again. A sink with neither (a third-party sink without `flush()`) gets no checkpoint.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any, Optional

from datahub.emitter.aspect import TIMESERIES_ASPECT_MAP
from datahub.emitter.serialization_helper import post_json_transform
from datahub.ingestion.api.sink import Sink
from datahub.ingestion.fs.fs_base import get_path_schema
from datahub.ingestion.fs.fs_registry import fs_registry
from datahub.ingestion.sink.sink_registry import sink_registry
from datahub.metadata.schema_classes import ASPECT_NAME_MAP

from connector.mapping.common import Mcp

AT_COMMIT, FILE, GMS, NONE = "at-commit", "file", "gms", "none"
SYNCHRONOUS_SINKS = ("datahub-lite", "console", "blackhole")
VERIFY_SEC = 300.0  # bound of the read-back of a pending REST run


def delivery_kind(pipeline_config) -> str:
    """How this pipeline's sink lets us know it delivered: AT_COMMIT, FILE, GMS (read back) or NONE."""
    sink = pipeline_config.sink if pipeline_config is not None else None
    if sink is None or sink.type == "datahub-rest":  # DataHub's default sink is the REST one
        sink_type = "datahub-rest"
    else:
        sink_type = sink.type
    if sink_type in SYNCHRONOUS_SINKS:
        return AT_COMMIT
    try:
        sink_class = sink_registry.get(sink_type)
    except Exception:  # DataHub itself refuses an unknown sink before the source runs
        return NONE
    if sink_class.flush is not Sink.flush:
        return AT_COMMIT
    if sink_type == "file":
        return FILE
    if sink_type == "datahub-rest":
        return GMS
    return NONE


def canonical_digest(aspect_name: str, value: Any) -> str:
    """The aspect as DataHub's class reads it (declared defaults filled in): what GMS answers."""
    aspect_class = ASPECT_NAME_MAP[aspect_name]
    canonical = aspect_class.from_obj(post_json_transform(value)).to_obj()
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


class DeliveryLedger:
    """What a run handed to DataHub, kept as the evidence its delivery is checked against."""

    def __init__(self, kind: str):
        self.kind = kind
        self.handed_over = 0
        self.versioned: dict[str, str] = {}   # "urn aspect" -> digest of the last value sent
        self.timeseries: set[tuple] = set()   # (urn, aspect, timestampMillis)
        self.unverifiable: Optional[str] = None

    def note(self, proposal: Mcp) -> None:
        self.handed_over += 1
        if self.kind != GMS:
            return
        name = proposal.aspect_name
        if name in TIMESERIES_ASPECT_MAP:
            self.timeseries.add((proposal.entity_urn, name, proposal.aspect.get("timestampMillis")))
        elif name in ASPECT_NAME_MAP:
            self.versioned[f"{proposal.entity_urn} {name}"] = canonical_digest(name, proposal.aspect)
        elif self.unverifiable is None:
            self.unverifiable = f"aspect {name} is unknown to this acryl-datahub"

    def evidence(self, pipeline_config, run_id: str, graph) -> dict:
        sink = pipeline_config.sink if pipeline_config is not None else None
        out: dict = {"kind": self.kind, "datahub_run_id": run_id, "handed_over": self.handed_over}
        if self.kind == FILE and sink is not None:
            filename = (sink.config or {}).get("filename")
            # a relative path is where this run wrote it, whatever the next run's working directory
            if isinstance(filename, str) and get_path_schema(filename) == "file":
                filename = os.path.abspath(filename)
            out["filename"] = filename
        if self.kind == GMS:
            out["server"] = graph.config.server if graph is not None else None
            out["versioned"] = sorted(self.versioned.items())
            out["timeseries"] = sorted([list(t) for t in self.timeseries], key=str)
            out["unverifiable"] = self.unverifiable
        return out


def undelivered(evidence: dict, graph) -> Optional[str]:
    """Why a pending run cannot be confirmed (None: everything it handed over was delivered)."""
    if evidence.get("kind") == FILE:
        return _file_problem(evidence)
    if evidence.get("kind") == GMS:
        try:
            return _gms_problem(evidence, graph)
        except Exception as exc:  # GMS unreachable or answering an error: not confirmed, sent again
            return f"reading the run back from GMS failed: {type(exc).__name__}: {str(exc)[:200]}"
    return f"no way to confirm delivery by a {evidence.get('kind')!r} sink"


def _file_problem(evidence: dict) -> Optional[str]:
    filename = evidence.get("filename")
    if not filename:
        return "the file sink's filename is not known"
    try:
        with fs_registry.get(get_path_schema(filename)).create().open(filename) as handle:
            records = json.load(handle)
    except (OSError, ValueError) as exc:
        return f"{filename} cannot be read back: {type(exc).__name__}: {exc}"
    except Exception as exc:  # a remote file system DataHub cannot reach
        return f"{filename} cannot be read back: {type(exc).__name__}: {exc}"
    if not isinstance(records, list):
        return f"{filename} is not a JSON list of records"
    run_id = evidence.get("datahub_run_id")
    found = sum(1 for r in records if isinstance(r, dict) and (r.get("systemMetadata") or {}).get("runId") == run_id)
    if found < evidence.get("handed_over", 0):
        return f"{filename} holds {found} of the {evidence.get('handed_over')} records of DataHub run {run_id}"
    return None


def _gms_problem(evidence: dict, graph, wait_sec: float = VERIFY_SEC) -> Optional[str]:
    if evidence.get("unverifiable"):
        return str(evidence["unverifiable"])
    if graph is None or graph.config.server != evidence.get("server"):
        return f"this run does not reach the GMS the pending run wrote to ({evidence.get('server')})"
    deadline = time.monotonic() + wait_sec
    for key, digest in evidence.get("versioned", []):
        urn, name = key.rsplit(" ", 1)
        value = graph.get_aspect(urn, ASPECT_NAME_MAP[name])
        if value is None or hashlib.sha256(json.dumps(value.to_obj(), sort_keys=True).encode()).hexdigest() != digest:
            return f"GMS does not hold {name} of {urn} as sent"
        if time.monotonic() > deadline:
            return f"reading the run back from GMS took longer than {wait_sec:.0f} s"
    for urn, name, timestamp in evidence.get("timeseries", []):
        when = {"or": [{"and": [{"field": "timestampMillis", "values": [str(timestamp)], "condition": "EQUAL"}]}]}
        if not graph.get_timeseries_values(urn, ASPECT_NAME_MAP[name], when, limit=1):
            return f"GMS does not hold {name} of {urn} at {timestamp}"
        if time.monotonic() > deadline:
            return f"reading the run back from GMS took longer than {wait_sec:.0f} s"
    return None
