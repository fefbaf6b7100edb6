"""A test catalog server (DataHub GMS's Rest.li ingestion endpoints) on loopback.

It parses every request, checks the headers, decodes every proposal, validates it with the
`validate` callable it was given (tests pass acryl-datahub's schema check, tests.catalog_validation;
a failed assertion becomes a problem) and records it. Faults are switched on per test. Reads: the
latest value of an aspect (`GET /aspects/URN?aspect=NAME&version=0`) and, for timeseries aspects
(e.g. `datahubIngestionCheckpoint`), `POST /aspects?action=getTimeseriesAspectValues`; like real GMS,
which indexes timeseries values asynchronously, a value can be made readable only some reads after it
was written (`index_after_reads`) or some seconds after (`index_delay_sec`).
"""
from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import unquote, urlsplit

from datahub.metadata import schema_classes

# (proposal as received, its aspect decoded) -> None; raises AssertionError naming what is wrong
ProposalCheck = Callable[[dict, dict], None]


class CatalogServer:
    def __init__(self, token: Optional[str] = None, validate: Optional[ProposalCheck] = None):
        self.token = token
        self.validate = validate
        self.received: list[dict] = []         # accepted proposals, aspect decoded
        self.requests: list[dict] = []         # every request: method, path, headers, body
        self.answered: list[int] = []          # the status of every answer sent, in order
        self.problems: list[str] = []          # header or schema problems the server saw
        self.store: dict[tuple, dict] = {}     # (urn, aspect) -> latest value, for the read API
        # timeseries aspects as GMS indexes them:
        # (urn, aspect) -> {document key: (aspect, systemMetadata, (first read that sees it, from when))}
        self.timeseries: dict[tuple, dict] = {}
        self.index_after_reads = 0             # a timeseries value is missed by this many reads after its write
        self.index_delay_sec = 0.0             # ... and by every read in this many seconds after it
        self.timeseries_reads = 0
        # called with (request headers, action) before an ingest request is handled: tests hold one back
        self.before_ingest: Callable[[dict, str], None] = lambda headers, action: None
        # faults
        self.fail_first = 0                    # answer 503 to the first N ingest requests
        self.retry_after: Optional[str] = None
        self.reset_first = 0                   # drop the connection without answering
        self.stall_first = 0                   # sleep stall_seconds before answering
        self.stall_seconds = 0.0
        self.no_batch_endpoint = False         # 404 on ingestProposalBatch
        self.reject: Callable[[dict], Optional[str]] = lambda record: None
        # 503 to every batch holding a proposal this matches (an outage that hits part of a run)
        self.unavailable_for: Callable[[dict], bool] = lambda record: False
        self.gone_after: Optional[int] = None  # stop listening after N ingest requests
        self.read_status: Optional[int] = None  # answer this status to every aspect read
        self._ingest_requests = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()  # headers and body go out in separate writes: no Nagle delay
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args):
                pass

            def _reply(self, status: int, payload) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                owner.answered.append(status)

            def do_GET(self):
                owner.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
                if not owner._authorised(self.headers):
                    return self._reply(401, {"message": "Unauthorized"})
                url = urlsplit(self.path)
                if url.path == "/config":
                    return self._reply(200, {"noCode": "true", "statefulIngestionCapable": True,
                                             "versions": {"acryldata/datahub": {"version": "v1.3.0"}}})
                if url.path.startswith("/aspects/") and owner.read_status is not None:
                    return self._reply(owner.read_status, {"message": "read refused", "status": owner.read_status})
                if url.path.startswith("/aspects/"):
                    urn = unquote(url.path[len("/aspects/"):])
                    aspect = dict(p.split("=", 1) for p in url.query.split("&") if "=" in p).get("aspect")
                    value = owner.store.get((urn, aspect))
                    if value is None:
                        return self._reply(404, {"message": f"no {aspect} for {urn}"})
                    # keyed by the aspect's record name, as Rest.li answers (DataHub's client looks it up)
                    known = schema_classes.ASPECT_NAME_MAP.get(aspect or "")
                    key = (known.RECORD_SCHEMA.fullname.replace(".pegasus2avro", "") if known
                           else f"com.linkedin.{aspect}")
                    return self._reply(200, {"aspect": {key: value}, "version": 0})
                return self._reply(404, {"message": "not found"})

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append({"method": "POST", "path": self.path,
                                       "headers": dict(self.headers), "body": body})
                action = urlsplit(self.path).query
                with owner._lock:
                    owner._ingest_requests += 1
                    n = owner._ingest_requests
                if owner.gone_after is not None and n > owner.gone_after:
                    threading.Thread(target=owner.stop, daemon=True).start()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if n <= owner.reset_first:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if n <= owner.stall_first:
                    time.sleep(owner.stall_seconds)
                if not owner._authorised(self.headers):
                    return self._reply(401, {"message": "Unauthorized"})
                if n <= owner.fail_first:
                    self.send_response(503)
                    if owner.retry_after:
                        self.send_header("Retry-After", owner.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    owner.answered.append(503)
                    return
                owner._check_headers(self.headers)
                payload = json.loads(body)
                if action.startswith("action=ingestProposal"):
                    owner.before_ingest(dict(self.headers), action)
                if action == "action=getTimeseriesAspectValues":
                    status, answer = owner.timeseries_values(payload)
                    return self._reply(status, answer)
                if action == "action=ingestProposalBatch":
                    if owner.no_batch_endpoint:
                        return self._reply(404, {"message": "No such action"})
                    records = payload["proposals"]
                elif action == "action=ingestProposal":
                    records = [payload["proposal"]]
                else:
                    return self._reply(404, {"message": f"unknown action {action}"})
                decoded = [owner._decode(r) for r in records]
                if any(owner.unavailable_for(record) for record in decoded):
                    return self._reply(503, {"message": "unavailable", "status": 503})
                for record in decoded:
                    reason = owner.reject(record)
                    if reason:  # GMS validates the whole batch and rejects it whole
                        return self._reply(400, {"message": reason, "status": 400})
                with owner._lock:
                    for record in decoded:
                        owner.received.append(record)
                        owner.store[(record["entityUrn"], record["aspectName"])] = record["aspect"]
                        owner._index_timeseries(record)
                return self._reply(200, {"value": [r["entityUrn"] for r in decoded]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._stopped = False

    def _authorised(self, headers) -> bool:
        return self.token is None or headers.get("Authorization") == f"Bearer {self.token}"

    def _check_headers(self, headers) -> None:
        if headers.get("Content-Type") != "application/json":
            self.problems.append(f"Content-Type {headers.get('Content-Type')!r}")
        if headers.get("X-RestLi-Protocol-Version") != "2.0.0":
            self.problems.append(f"X-RestLi-Protocol-Version {headers.get('X-RestLi-Protocol-Version')!r}")

    def _decode(self, record: dict) -> dict:
        aspect = record["aspect"]
        if aspect.get("contentType") != "application/json":
            self.problems.append(f"contentType {aspect.get('contentType')!r}")
        value = json.loads(aspect["value"])
        try:
            if self.validate is not None:
                self.validate(record, value)
        except AssertionError as exc:
            self.problems.append(f"{record['entityUrn']} {record['aspectName']}: {exc}")
        return {**record, "aspect": value}

    def _index_timeseries(self, record: dict) -> None:
        """GMS keeps every value of a timeseries aspect (one search document per urn, timestamp,
        partition and messageId; the same key again replaces the document)."""
        if schema_classes.ASPECT_NAME_MAP[record["aspectName"]].ASPECT_TYPE != "timeseries":
            return
        aspect = record["aspect"]
        key = (aspect.get("timestampMillis"), json.dumps(aspect.get("partitionSpec"), sort_keys=True),
               aspect.get("messageId"))
        self.timeseries.setdefault((record["entityUrn"], record["aspectName"]), {})[key] = (
            aspect, record.get("systemMetadata"),
            (self.timeseries_reads + self.index_after_reads + 1, time.monotonic() + self.index_delay_sec))

    def timeseries_values(self, query: dict) -> tuple[int, dict]:
        """`getTimeseriesAspectValues`: newest first, EQUAL filters on the aspect's fields, a time
        window and a limit; each value an enveloped aspect whose `value` is the aspect as a JSON string."""
        name = str(query.get("aspect"))
        aspect_class = schema_classes.ASPECT_NAME_MAP.get(name)
        if aspect_class is None or aspect_class.ASPECT_TYPE != "timeseries":
            return 400, {"message": f"{name} is not a timeseries aspect", "status": 400}
        if not query.get("urn") or not query.get("entity"):
            return 400, {"message": "urn and entity are required", "status": 400}

        def matches(aspect: dict) -> bool:
            start, end = query.get("startTimeMillis"), query.get("endTimeMillis")
            if (start is not None and aspect["timestampMillis"] < start) or \
                    (end is not None and aspect["timestampMillis"] > end):
                return False
            ors = (query.get("filter") or {}).get("or") or [{"and": []}]
            return any(all(c.get("condition", "EQUAL") == "EQUAL" and str(aspect.get(c["field"])) in c["values"]
                           for c in clause.get("and", [])) for clause in ors)

        with self._lock:
            self.timeseries_reads += 1
            docs = [d for d in self.timeseries.get((query["urn"], name), {}).values()
                    if d[2][0] <= self.timeseries_reads and d[2][1] <= time.monotonic()]  # else not indexed yet
        docs = sorted((d for d in docs if matches(d[0])), key=lambda d: d[0]["timestampMillis"], reverse=True)
        limit = query.get("limit") or 10000
        values = [{"aspect": {"value": json.dumps(a), "contentType": "application/json"},
                   **({"systemMetadata": m} if m else {})} for a, m, _ in docs[:limit]]
        return 200, {"value": {"entityName": query["entity"], "aspectName": name, "limit": limit,
                               "values": values}}

    def all_indexed(self) -> bool:
        """Every timeseries value written so far is seen by the next read (its index delay is over)."""
        with self._lock:
            return all(d[2][0] <= self.timeseries_reads + 1 and d[2][1] <= time.monotonic()
                       for docs in self.timeseries.values() for d in docs.values())

    def start(self) -> "CatalogServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
