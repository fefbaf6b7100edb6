"""HTTP to the catalog server (DataHub GMS, Rest.li): what DataHub's own emitter sends.

    POST {server}/aspects?action=ingestProposalBatch  {"proposals": [MCP, ...], "async": "false"}
    POST {server}/aspects?action=ingestProposal       {"proposal": MCP, "async": "false"}
    GET  {server}/config

with MCP's aspect as {"value": "<aspect JSON>", "contentType": "application/json"}.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Optional

import requests

from connector.mapping.common import Mcp
from connector.sinks.base import to_wire
from connector.secrets import redact_url, url_credentials

RETRY_STATUSES = {429, 500, 502, 503, 504}


class GmsAuthError(Exception):
    """401/403: the token was rejected; nothing will get through."""


class GmsUnavailable(Exception):
    """No answer after every retry (connection refused/reset, timeouts, 5xx)."""


class GmsRejected(Exception):
    """A 4xx other than 401/403/404: the server refuses this payload for good."""

    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class BatchEndpointMissing(Exception):
    """404 on the batch endpoint: an older server; send proposals one by one."""


def rest_record(proposal: Mcp, system_metadata: dict) -> dict:
    record = to_wire(proposal, system_metadata)
    record["aspect"] = {"value": json.dumps(proposal.aspect, ensure_ascii=False, allow_nan=False),
                        "contentType": "application/json"}
    return record


@dataclass
class GmsSettings:
    server: str
    token: Optional[str] = None
    timeout_sec: float = 30.0
    max_retries: int = 5
    retry_backoff_sec: float = 1.0
    max_backoff_sec: float = 30.0
    verify: object = True
    extra_headers: dict = field(default_factory=dict)


def _server_message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason
    if isinstance(body, dict):
        return str(body.get("message") or body.get("exceptionClass") or body)[:500]
    return str(body)[:500]


class GmsClient:
    def __init__(self, settings: GmsSettings):
        self.settings = settings
        self.server = redact_url(settings.server.rstrip("/"))
        self._session = requests.Session()
        self._session.verify = settings.verify
        self._session.headers.update({
            "Content-Type": "application/json",
            "X-RestLi-Protocol-Version": "2.0.0",
            **settings.extra_headers,
        })
        if settings.token:
            self._session.headers["Authorization"] = f"Bearer {settings.token}"
        else:  # user:password@ in the server URL: basic auth (the URL in messages stays redacted)
            self._session.auth = url_credentials(settings.server)  # percent-decoded (connector.secrets)
        self.requests_made = 0
        self.retries_made = 0

    def __repr__(self) -> str:  # never the token
        return f"GmsClient({self.server!r})"

    def _request(self, method: str, path: str, body: Optional[bytes] = None) -> requests.Response:
        url = f"{self.server}{path}"
        attempt = 0
        while True:
            self.requests_made += 1
            wait = None
            try:
                response = self._session.request(method, url, data=body, timeout=self.settings.timeout_sec)
            except requests.exceptions.RequestException as exc:
                problem = type(exc).__name__
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status in (401, 403):
                    raise GmsAuthError(f"token rejected by {self.server} (HTTP {status})")
                if status not in RETRY_STATUSES:
                    return response
                problem = f"HTTP {status}"
                retry_after = response.headers.get("Retry-After")
                if retry_after and retry_after.replace(".", "", 1).isdigit():
                    wait = float(retry_after)
            attempt += 1
            if attempt > self.settings.max_retries:
                raise GmsUnavailable(f"{self.server} did not take proposals ({problem}, "
                                     f"after {attempt} attempts)")
            if wait is None:
                wait = min(self.settings.max_backoff_sec,
                           self.settings.retry_backoff_sec * 2 ** (attempt - 1)) * (0.5 + random.random())
            self.retries_made += 1
            time.sleep(wait)

    def _post(self, path: str, payload: dict, batch: bool = False) -> None:
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        response = self._request("POST", path, body)
        if response.status_code < 400:
            return
        if batch and response.status_code == 404:
            raise BatchEndpointMissing()
        raise GmsRejected(response.status_code, _server_message(response))

    def send_batch(self, records: list[dict]) -> None:
        self._post("/aspects?action=ingestProposalBatch", {"proposals": records, "async": "false"}, batch=True)

    def send_one(self, record: dict) -> None:
        self._post("/aspects?action=ingestProposal", {"proposal": record, "async": "false"})

    def config(self) -> dict:
        response = self._request("GET", "/config")
        if response.status_code >= 400:
            raise GmsRejected(response.status_code, _server_message(response))
        try:
            return response.json()
        except ValueError as exc:
            raise GmsRejected(response.status_code, f"{self.server}/config is not JSON") from exc

    def get_aspect(self, urn: str, aspect_name: str) -> Optional[dict]:
        """The current value of one aspect (GMS read API), or None when it has none."""
        from urllib.parse import quote

        response = self._request("GET", f"/aspects/{quote(urn, safe='')}?aspect={aspect_name}&version=0")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise GmsRejected(response.status_code, _server_message(response))
        value = response.json().get("aspect", {})
        # Rest.li answers {"aspect": {"com.linkedin.ml.metadata.MLModelProperties": {...}}}
        return next(iter(value.values()), None) if value else None

    def close(self) -> None:
        self._session.close()
