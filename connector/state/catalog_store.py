"""Pipeline state kept in the catalog itself (DataHub GMS), so any machine can continue a checkpoint.

DataHub's own model for ingestion checkpoints: the timeseries aspect `datahubIngestionCheckpoint`
on `urn:li:dataJob:(urn:li:dataFlow:(datahub,PIPELINE,prod),JOB)`, its `state.payload` an opaque
blob (`serde` base85-bz2-json: JSON, bz2, base85, as DataHub writes it). Written with
`ingestProposal`, read back with `getTimeseriesAspectValues`. Like DataHub, the dataJob is marked
`status removed` so it stays out of search.

Safe across machines (connector.state.history): no machine's clock orders the values, and a save
never hides another run's work. Each value carries a sequence, an id (`messageId`) and the ids of
the values it was made from (`config`, as JSON); the values no other value was made from are the
current ones (usually one; two when runs on two machines saved without seeing each other, or GMS,
which indexes timeseries values asynchronously, had not shown a value yet), and a load merges them.
A save reads again and merges what others saved since its run started (connector.state.merge)
instead of overwriting it. `timestampMillis` only ever grows (max(now, newest + 1)), so a value
written by a clock a day ahead stays below the next one, and DataHub's own "latest value" is ours.
"""
from __future__ import annotations

import base64
import bz2
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Optional

from connector.mapping.urns import checkpoint_job_urn
from connector.sinks.gms_client import GmsAuthError, GmsClient, GmsRejected, GmsUnavailable
from connector.state.history import StoredValue, heads, lineage_config, next_position, stored_value
from connector.state.merge import merge_states
from connector.state.store import PipelineState, StateError

ASPECT = "datahubIngestionCheckpoint"
JOB_NAME = "mlflow_catalog_state"   # our payload is not DataHub's MLflow source's: a job of its own
FORMAT_VERSION = "1.0"
SERDE = "base85-bz2-json"
MAX_PAYLOAD_BYTES = 14 * 1024 * 1024  # GMS refuses requests of ~15 MB
# Values read per load and save: every value saved since the last one a run saw (a backfill saves one
# per page, but merges what it sees at each save, so others' values are taken in long before they drop out).
WINDOW = 10
OWN_IDS_KEPT = 50  # a run's own earlier values its next one names (a backfill saves once per page)
# The newest value's id, sequence and time also go into a versioned aspect, which GMS reads back at
# once: a run waits (at most INDEX_WAIT_SEC) until the timeseries index shows that value.
POINTER_ASPECT = "dataJobInfo"
INDEX_WAIT_SEC = 20.0

log = logging.getLogger(__name__)


def checkpoint_aspect(pipeline: str, state: PipelineState, run_id: str, now_ms: int) -> dict:
    """The aspect (wire JSON) holding `state`."""
    raw = json.dumps(state.to_json(), separators=(",", ":")).encode("utf-8")
    payload = base64.b85encode(bz2.compress(raw, compresslevel=9)).decode("ascii")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise StateError(f"the state of pipeline {pipeline!r} is {len(payload)} bytes compressed, more than "
                         f"GMS takes in one request ({MAX_PAYLOAD_BYTES}); use state.backend: file")
    return {"timestampMillis": now_ms, "pipelineName": pipeline, "platformInstanceId": "", "config": "",
            "runId": run_id, "state": {"formatVersion": FORMAT_VERSION, "serde": SERDE, "payload": payload}}


def state_from_aspect(aspect: dict, where: str) -> PipelineState:
    state = aspect.get("state") or {}
    serde, version, payload = state.get("serde"), state.get("formatVersion"), state.get("payload")
    if version != FORMAT_VERSION:
        raise StateError(f"{where}: checkpoint formatVersion {version!r} is not one this connector reads")
    try:
        if serde == "base85-bz2-json":
            raw = bz2.decompress(base64.b85decode(payload or ""))
        elif serde == "utf-8":  # bytes travel as a JSON string of code points 0-255
            raw = (payload or "").encode("latin-1")
        else:
            raise StateError(f"{where}: checkpoint serde {serde!r} is unknown")
        data = json.loads(raw.decode("utf-8")) if raw else {}
    except (ValueError, OSError) as exc:
        raise StateError(f"{where}: checkpoint payload cannot be decoded ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise StateError(f"{where}: checkpoint payload is not a pipeline state")
    try:
        return PipelineState.from_json(data)
    except StateError as exc:
        raise StateError(f"{where}: the checkpoint {exc}; delete that checkpoint, or use another pipeline_name "
                         "(the next run is then a full crawl)") from None


@dataclass
class _Session:
    """One run's view: the state it started from (and the values that made it), what it wrote."""
    base: PipelineState
    started_from: frozenset
    written: list = field(default_factory=list)  # ids of its values, oldest first
    absorbed: set = field(default_factory=set)  # ids of others' values merged into `merged`
    merged: Optional[PipelineState] = None  # the last value it wrote, once it holds others' work
    position: Optional[tuple[int, int]] = None  # (sequence, timestampMillis) of its last value


@dataclass(frozen=True)
class _Pointer:
    id: str
    sequence: int
    timestamp: int


def pointer_aspect(job_name: str, pointer: _Pointer) -> dict:
    return {"name": job_name, "type": {"string": "COMMAND"},
            "description": "checkpoints of an mlflow-catalog pipeline (datahubIngestionCheckpoint)",
            "customProperties": {"checkpointId": pointer.id, "checkpointSequence": str(pointer.sequence),
                                 "checkpointTimestampMillis": str(pointer.timestamp)}}


def pointer_from_aspect(aspect: Optional[dict]) -> Optional[_Pointer]:
    props = (aspect or {}).get("customProperties") or {}
    try:
        return _Pointer(str(props["checkpointId"]), int(props["checkpointSequence"]),
                        int(props["checkpointTimestampMillis"]))
    except (KeyError, TypeError, ValueError):
        return None


class GmsStateStore:
    """`load` / `save` like StateFile, against GMS (through the connector's one HTTP layer)."""

    def __init__(self, client: GmsClient, job_name: str = JOB_NAME):
        self.client = client
        client.named = "the state server"
        self.job_name = job_name
        self.server = client.server
        self._sessions: dict[str, _Session] = {}

    def __repr__(self) -> str:  # never the token
        return f"GmsStateStore({self.server!r})"

    @property
    def path(self) -> str:  # where the state is, for messages
        return f"{self.server} (datahubIngestionCheckpoint of {self.job_name})"

    def urn(self, pipeline: str) -> str:
        return checkpoint_job_urn(pipeline, self.job_name)

    def check_server(self) -> str:
        """GMS's version, or StateError when the state server is not GMS (its /config says)."""
        try:
            config = self.client.config()
        except GmsRejected as exc:
            raise StateError(f"{exc}: is the state server DataHub's GMS?") from None
        except (GmsAuthError, GmsUnavailable) as exc:
            raise StateError(str(exc)) from None
        return str((config.get("versions", {}).get("acryldata/datahub", {}) or {}).get("version", "unknown"))

    def load(self, pipeline: str) -> PipelineState:
        """The current state: the newest value, or the merge of several that did not see each other."""
        values, _ = self._read_current(pipeline)
        current = heads(values)
        state = self._combine(PipelineState(), [self._state(v, pipeline) for v in current])
        self._sessions[pipeline] = _Session(state, frozenset(v.id for v in current))
        return state

    def save(self, pipeline: str, state: PipelineState) -> None:
        """A new value after every value seen; what other runs saved since this run's load is merged in."""
        values, pointer = self._read_current(pipeline)
        session = self._sessions.get(pipeline)
        if session is None:  # a save without a load: it supersedes what is there
            session = self._sessions[pipeline] = _Session(state, frozenset(v.id for v in heads(values)))
        state = self._merge_others(pipeline, session, values, state)
        known = [p for p in (session.position, pointer and (pointer.sequence, pointer.timestamp)) if p]
        sequence, now = next_position(values, known, int(time.time() * 1000))
        value_id = uuid.uuid4().hex[:16]
        based_on = session.started_from | set(session.written[-OWN_IDS_KEPT:]) | session.absorbed
        self._write(pipeline, state, _Pointer(value_id, sequence, now), based_on)
        session.written.append(value_id)
        session.position = (sequence, now)

    def _merge_others(self, pipeline: str, session: _Session, values: list[StoredValue],
                      state: PipelineState) -> PipelineState:
        """`state` merged with what other runs saved since this one started (unchanged when nothing)."""
        mine = set(session.written)
        others = [v for v in heads([v for v in values if v.id not in mine])
                  if v.id not in session.started_from and v.id not in session.absorbed]
        theirs = ([session.merged] if session.merged is not None else []) + [self._state(v, pipeline) for v in others]
        if not theirs:
            return state
        session.merged = merge_states(session.base, state, self._combine(session.base, theirs))
        session.absorbed.update(v.id for v in others)
        return session.merged

    def _write(self, pipeline: str, state: PipelineState, pointer: _Pointer, based_on: frozenset) -> None:
        urn, now = self.urn(pipeline), pointer.timestamp
        run_id = str((state.backfill or {}).get("run_id") or state.checkpoint.get("run_id") or "")
        aspect = checkpoint_aspect(pipeline, state, run_id, now)
        aspect.update(messageId=pointer.id, config=lineage_config(pointer.sequence, based_on))
        self._ingest(urn, ASPECT, aspect, now, run_id)
        self._ingest(urn, POINTER_ASPECT, pointer_aspect(self.job_name, pointer), now, run_id)
        # Out of search, as DataHub does. The fresh lifecycleLastUpdated keeps DataHub's GC from
        # hard-deleting a soft-deleted entity it thinks unchanged (and the checkpoint with it); a GMS
        # older than that field refuses it, and gets the plain status.
        try:
            self._ingest(urn, "status", {"removed": True, "lifecycleLastUpdated": {
                "time": now, "actor": "urn:li:corpuser:datahub"}}, now, run_id)
        except CheckpointRefused:
            self._ingest(urn, "status", {"removed": True}, now, run_id)

    @staticmethod
    def _combine(base: PipelineState, states: list[PipelineState]) -> PipelineState:
        if not states:
            return PipelineState()
        combined = states[0]
        for other in states[1:]:
            combined = merge_states(base, combined, other)
        return combined

    def _state(self, value: StoredValue, pipeline: str) -> PipelineState:
        return state_from_aspect(value.aspect, f"{self.server} {self.urn(pipeline)}")

    def _read_current(self, pipeline: str) -> tuple[list[StoredValue], Optional[_Pointer]]:
        """The newest values, once the newest one saved (the pointer says which) is among them."""
        pointer = self._pointer(pipeline)
        deadline, pause = time.monotonic() + INDEX_WAIT_SEC, 0.1
        while True:
            values = self._read(pipeline)
            if pointer is None or any(v.id == pointer.id for v in values):
                return values, pointer
            if time.monotonic() + pause > deadline:
                log.warning("%s: checkpoint %s (sequence %s) is not indexed yet after %.0f s; going on with the "
                            "values GMS shows (what it holds is merged in later)", self.urn(pipeline), pointer.id,
                            pointer.sequence, INDEX_WAIT_SEC)
                return values, pointer
            self.client.settings.http.stop.sleep(pause)
            pause = min(pause * 2, 2.0)

    def _pointer(self, pipeline: str) -> Optional[_Pointer]:
        urn = self.urn(pipeline)
        try:
            return pointer_from_aspect(self.client.get_aspect(urn, POINTER_ASPECT))
        except (GmsAuthError, GmsUnavailable) as exc:
            raise StateError(f"reading the checkpoint of {urn}: {exc}") from None
        except (GmsRejected, ValueError, AttributeError) as exc:
            raise StateError(f"reading the checkpoint of {urn}: {self.server} answered something that is not GMS's "
                             f"answer ({type(exc).__name__}): is the state server DataHub's GMS?") from None

    def _read(self, pipeline: str) -> list[StoredValue]:
        """The newest values of the pipeline's checkpoint (GMS answers them newest first)."""
        urn = self.urn(pipeline)
        doing = f"reading the checkpoint of {urn}"
        answer = self._post("/aspects?action=getTimeseriesAspectValues", {
            "urn": urn, "entity": "dataJob", "aspect": ASPECT, "limit": WINDOW,
            "filter": {"or": [{"and": [{"field": "pipelineName", "values": [pipeline], "condition": "EQUAL"}]}]},
        }, doing)
        values = (answer or {}).get("value")
        if not isinstance(values, dict) or not isinstance(values.get("values", []), list):
            raise StateError(f"{doing}: {self.server} answered something that is not GMS's answer "
                             f"({str(answer)[:80]!r}): is the state server DataHub's GMS?")
        try:
            return [stored_value(json.loads(v["aspect"]["value"])) for v in values.get("values") or []]
        except (KeyError, TypeError, ValueError):
            raise StateError(f"{self.server} {urn}: the checkpoint GMS answered is not an aspect") from None

    def _ingest(self, urn: str, aspect_name: str, aspect: dict, now: int, run_id: str) -> None:
        record = {"entityType": "dataJob", "entityUrn": urn, "changeType": "UPSERT", "aspectName": aspect_name,
                  "aspect": {"value": json.dumps(aspect), "contentType": "application/json"},
                  "systemMetadata": {"lastObserved": now, "runId": run_id}}
        self._post("/aspects?action=ingestProposal", {"proposal": record, "async": "false"},
                   f"writing the checkpoint of {urn}")

    def _post(self, path: str, payload: dict, doing: str) -> Optional[dict]:
        try:
            return self.client.post(path, payload)
        except GmsAuthError as exc:
            raise StateError(f"{doing}: {exc}") from None
        except GmsUnavailable as exc:
            raise StateError(f"{doing}: {exc}") from None
        except GmsRejected as exc:
            raise CheckpointRefused(f"{doing}: {self.server} answered {exc}") from None


class CheckpointRefused(StateError):
    """A 4xx other than 401/403: GMS refuses this request for good."""
