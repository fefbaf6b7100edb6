"""HTTP to the catalog server (DataHub GMS, Rest.li): what DataHub's own emitter sends.

    POST {server}/aspects?action=ingestProposalBatch  {"proposals": [MCP, ...], "async": "false"}
    POST {server}/aspects?action=ingestProposal       {"proposal": MCP, "async": "false"}
    GET  {server}/config

with MCP's aspect as {"value": "<aspect JSON>", "contentType": "application/json"}.
Retries, deadlines and sessions are the shared HTTP layer's (connector/http.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional
from urllib.parse import quote

from connector.http import Answer, HttpClient, HttpSettings, ResponseTooLarge, RetriesExhausted
from connector.mapping.common import Mcp
from connector.sinks.base import to_wire


class GmsAuthError(Exception):
    """401/403: the token was rejected; nothing will get through."""


class GmsUnavailable(Exception):
    """No answer after every retry (connection refused/reset, timeouts, 5xx)."""


class GmsNotGms(GmsUnavailable):
    """A 2xx that is not GMS's answer (a login page behind a redirect, another service): nothing
    sent there is delivered."""


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


@dataclass(frozen=True)
class GmsSettings:
    server: str
    token: Optional[str] = None
    http: HttpSettings = field(default_factory=HttpSettings)
    extra_headers: dict = field(default_factory=dict)

    def __repr__(self) -> str:  # never the token
        return f"GmsSettings(server={self.server!r})"


def _server_message(answer: Answer) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text(500) or f"HTTP {answer.status}"
    if isinstance(body, dict):
        return str(body.get("message") or body.get("exceptionClass") or body)[:500]
    return str(body)[:500]


class GmsClient:
    named = "`server`"  # what the user set to this URL, for messages

    def __init__(self, settings: GmsSettings):
        self.settings = settings
        self._http = HttpClient(settings.server, settings.http, token=settings.token, headers={
            "Content-Type": "application/json", "X-RestLi-Protocol-Version": "2.0.0", **settings.extra_headers})
        self.server = self._http.base_url

    def __repr__(self) -> str:  # never the token
        return f"GmsClient({self.server!r})"

    @property
    def requests_made(self) -> int:
        return self._http.requests_made

    @property
    def retries_made(self) -> int:
        return self._http.retries_made

    def _request(self, method: str, path: str, body: Optional[bytes] = None) -> Answer:
        try:
            answer = self._http.request(method, path, data=body)
        except RetriesExhausted as exc:
            doing = "take proposals" if "ingestProposal" in path else f"answer {path}"
            raise GmsUnavailable(f"{self.server} did not {doing} ({exc})") from None
        except ResponseTooLarge as exc:
            raise GmsRejected(0, f"{self.server}{path}: {exc}") from None
        if answer.status in (401, 403):
            raise GmsAuthError(f"token rejected by {self.server} (HTTP {answer.status})")
        return answer

    def _taken(self, answer: Answer, path: str) -> None:
        """A delivery counts only on GMS's own answer: 2xx, and Rest.li's {"value": ...} (or nothing)."""
        if answer.status >= 300:
            raise GmsNotGms(f"{self.server}{path} answered HTTP {answer.status} (a redirect: a login page or "
                            "another service?); nothing is counted as delivered")
        if not answer.body.strip():
            return
        data = answer.json_object()
        if data is None or "value" not in data:
            raise GmsNotGms(f"{self.server}{path} answered {answer.describe()}, not GMS's answer: is {self.named} "
                            "DataHub's GMS?")

    def _refusal(self, answer: Answer, path: str) -> Exception:
        """A 4xx/5xx: GMS's own refusal (a JSON object), or a server that is not GMS at all (a web
        page, plain text), which nothing sent there will get past."""
        if answer.json_object() is None:
            return GmsNotGms(f"{self.server}{path} answered {answer.describe()}, not GMS's answer: is {self.named} "
                             "DataHub's GMS (e.g. http://host:8080)?")
        return GmsRejected(answer.status, _server_message(answer))

    def _post(self, path: str, payload: dict, batch: bool = False) -> None:
        answer = self._request("POST", path, json.dumps(payload, ensure_ascii=False).encode("utf-8"))
        if answer.status < 400:
            self._taken(answer, path)
            return
        refusal = self._refusal(answer, path)
        if batch and answer.status == 404 and isinstance(refusal, GmsRejected):
            raise BatchEndpointMissing()
        raise refusal

    def send_batch(self, records: list[dict]) -> None:
        self._post("/aspects?action=ingestProposalBatch", {"proposals": records, "async": "false"}, batch=True)

    def send_one(self, record: dict) -> None:
        self._post("/aspects?action=ingestProposal", {"proposal": record, "async": "false"})

    def post(self, path: str, payload: dict) -> Optional[dict]:
        """Any Rest.li action: the answer's JSON (None when empty); GmsRejected for a 4xx, GmsNotGms
        for a 2xx that is not GMS's answer (the rule deliveries follow)."""
        answer = self._request("POST", path, json.dumps(payload, ensure_ascii=False).encode("utf-8"))
        if answer.status >= 400:
            raise self._refusal(answer, path)
        self._taken(answer, path)
        return answer.json() if answer.body.strip() else None

    def config(self) -> dict:
        answer = self._request("GET", "/config")
        if answer.status >= 400:
            raise self._refusal(answer, "/config")
        try:
            data = answer.json()
        except ValueError:
            raise GmsRejected(answer.status, f"{self.server}/config is not JSON") from None
        if not isinstance(data, dict) or not {"versions", "noCode"} & set(data):
            raise GmsRejected(answer.status, f"{self.server}/config is not DataHub GMS's configuration")
        return data

    def get_aspect(self, urn: str, aspect_name: str) -> Optional[dict]:
        """The current value of one aspect (GMS read API), or None when it has none."""
        answer = self._request("GET", f"/aspects/{quote(urn, safe='')}?aspect={aspect_name}&version=0")
        if answer.status == 404:
            return None
        if answer.status >= 400:
            raise GmsRejected(answer.status, _server_message(answer))
        value = answer.json().get("aspect", {})
        # Rest.li answers {"aspect": {"com.linkedin.ml.metadata.MLModelProperties": {...}}}
        return next(iter(value.values()), None) if value else None

    def close(self) -> None:
        self._http.close()
