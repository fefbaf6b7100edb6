"""Pipeline state kept in the catalog itself (DataHub GMS), so any machine can continue a checkpoint.

DataHub's own model for ingestion checkpoints: the timeseries aspect `datahubIngestionCheckpoint`
on `urn:li:dataJob:(urn:li:dataFlow:(datahub,PIPELINE,prod),JOB)`, its `state.payload` an opaque
blob (`serde` base85-bz2-json: JSON, bz2, base85, as DataHub writes it). Written with
`ingestProposal`, read back as the latest value (`getTimeseriesAspectValues`, what
`DataHubGraph.get_latest_timeseries_value` asks). Like DataHub, the dataJob is marked
`status removed` so it stays out of search.
"""
from __future__ import annotations

import base64
import bz2
import json
import time
from typing import Optional

from connector.mapping.urns import checkpoint_job_urn
from connector.sinks.gms_client import GmsAuthError, GmsClient, GmsRejected, GmsUnavailable
from connector.state.store import PipelineState, StateError

ASPECT = "datahubIngestionCheckpoint"
JOB_NAME = "mlflow_catalog_state"   # our payload is not DataHub's MLflow source's: a job of its own
FORMAT_VERSION = "1.0"
SERDE = "base85-bz2-json"
MAX_PAYLOAD_BYTES = 14 * 1024 * 1024  # GMS refuses requests of ~15 MB


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


class CatalogStateStore:
    """`load` / `save` like StateFile, against GMS (through the connector's one HTTP layer)."""

    def __init__(self, client: GmsClient, job_name: str = JOB_NAME):
        self.client = client
        self.job_name = job_name
        self.server = client.server

    def __repr__(self) -> str:  # never the token
        return f"CatalogStateStore({self.server!r})"

    @property
    def path(self) -> str:  # where the state is, for messages
        return f"{self.server} (datahubIngestionCheckpoint of {self.job_name})"

    def urn(self, pipeline: str) -> str:
        return checkpoint_job_urn(pipeline, self.job_name)

    def load(self, pipeline: str) -> PipelineState:
        urn = self.urn(pipeline)
        answer = self._post("/aspects?action=getTimeseriesAspectValues", {
            "urn": urn, "entity": "dataJob", "aspect": ASPECT, "limit": 1,
            "filter": {"or": [{"and": [{"field": "pipelineName", "values": [pipeline], "condition": "EQUAL"}]}]},
        }, f"reading the checkpoint of {urn}")
        values = ((answer or {}).get("value") or {}).get("values") or []
        if not values:
            return PipelineState()
        where = f"{self.server} {urn}"
        try:
            aspect = json.loads(values[0]["aspect"]["value"])
        except (KeyError, TypeError, ValueError):
            raise StateError(f"{where}: the checkpoint GMS answered is not an aspect") from None
        return state_from_aspect(aspect, where)

    def save(self, pipeline: str, state: PipelineState) -> None:
        urn = self.urn(pipeline)
        now = int(time.time() * 1000)
        run_id = str((state.backfill or {}).get("run_id") or state.checkpoint.get("run_id") or "")
        self._ingest(urn, ASPECT, checkpoint_aspect(pipeline, state, run_id, now), now, run_id)
        # Out of search, as DataHub does. The fresh lifecycleLastUpdated keeps DataHub's GC from
        # hard-deleting a soft-deleted entity it thinks unchanged (and the checkpoint with it); a GMS
        # older than that field refuses it, and gets the plain status.
        try:
            self._ingest(urn, "status", {"removed": True, "lifecycleLastUpdated": {
                "time": now, "actor": "urn:li:corpuser:datahub"}}, now, run_id)
        except CheckpointRefused:
            self._ingest(urn, "status", {"removed": True}, now, run_id)

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
