"""MLflow REST API over `requests`: paged searches, retries, rate limit, request counting.

We talk to MLflow's REST API directly rather than through MlflowClient so that
retries, timeouts and credentials stay under this process's control: MlflowClient
reads them from process-wide environment variables and retries an unreachable
server for minutes.
"""
from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Optional

import requests

from connector.secrets import redact_url, url_credentials  # noqa: F401 (redact_url: re-exported)
from connector.source.errors import MlflowApiError, SourceAuthError, SourceUnreachable

API = "/api/2.0/mlflow"
RETRY_STATUSES = {429, 500, 502, 503, 504}


@dataclass(frozen=True)
class HttpSettings:
    timeout_sec: float = 30.0
    connect_timeout_sec: float = 5.0
    max_retries: int = 3
    retry_backoff_sec: float = 0.5
    retry_budget_sec: float = 30.0
    max_requests_per_second: Optional[float] = None
    verify: Any = True


class _RateLimiter:
    def __init__(self, per_second: Optional[float]):
        self._interval = 1.0 / per_second if per_second else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self._interval
        if delay > 0:
            time.sleep(delay)


def _retry_after_seconds(response: requests.Response) -> Optional[float]:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class HttpSession:
    """One base URL's requests: auth, retries with backoff and jitter, counting."""

    def __init__(self, base_url: str, settings: HttpSettings, auth=None, token: Optional[str] = None):
        if auth is None:  # user:password@ in the URL, percent-decoded as for GMS (connector.secrets)
            auth = url_credentials(base_url)
        self.base_url = redact_url(base_url.rstrip("/"))
        self.settings = settings
        self.requests_made = 0
        self.retries_made = 0
        self._session = requests.Session()
        self._session.verify = settings.verify
        if token:  # a bearer token wins over basic credentials
            self._session.headers["Authorization"] = f"Bearer {token}"
        elif auth is not None:
            self._session.auth = auth
        self._limiter = _RateLimiter(settings.max_requests_per_second)
        self._count_lock = threading.Lock()

    def call(self, method: str, endpoint: str, *, params=None, json=None) -> dict:
        url = f"{self.base_url}{API}/{endpoint}"
        deadline = time.monotonic() + self.settings.retry_budget_sec
        attempt = 0
        while True:
            self._limiter.wait()
            with self._count_lock:
                self.requests_made += 1
            problem: str
            wait: Optional[float] = None
            try:
                response = self._session.request(
                    method, url, params=params, json=json,
                    timeout=(self.settings.connect_timeout_sec, self.settings.timeout_sec),
                )
            except requests.exceptions.RequestException as exc:
                problem = f"{type(exc).__name__}"
            else:
                if response.status_code < 400:
                    try:
                        answer = response.json() if response.content else {}
                        if isinstance(answer, dict):
                            return answer
                        raise ValueError("not an object")
                    except ValueError:
                        raise MlflowApiError(
                            f"{self.base_url} answered {endpoint} with something that is not MLflow's JSON "
                            f"(HTTP {response.status_code}, {response.headers.get('Content-Type', 'no content type')}): "
                            "is this the tracking server's URL, or a login page in front of it?",
                            status=response.status_code) from None
                if response.status_code in (401, 403):
                    raise SourceAuthError(
                        f"MLflow at {self.base_url} rejected the credentials "
                        f"(HTTP {response.status_code}); check username/password/token"
                    )
                if response.status_code not in RETRY_STATUSES:
                    raise _api_error(response, url)
                problem = f"HTTP {response.status_code}"
                wait = _retry_after_seconds(response)
            attempt += 1
            if wait is None:
                wait = self.settings.retry_backoff_sec * (2 ** (attempt - 1))
                wait = wait * (0.5 + random.random())  # jitter
            if attempt > self.settings.max_retries or time.monotonic() + wait > deadline:
                raise SourceUnreachable(
                    f"MLflow at {self.base_url} did not answer {endpoint} "
                    f"({problem}, after {attempt} attempt(s))"
                )
            with self._count_lock:
                self.retries_made += 1
            time.sleep(wait)

    def get_bytes(self, path: str) -> bytes:
        with self._count_lock:
            self.requests_made += 1
        url = f"{self.base_url}{path}"
        try:
            response = self._session.get(url, timeout=(self.settings.connect_timeout_sec, self.settings.timeout_sec))
        except requests.exceptions.RequestException as exc:
            raise SourceUnreachable(f"MLflow at {self.base_url} did not answer {path} ({type(exc).__name__})") from exc
        if response.status_code >= 400:
            raise _api_error(response, url)
        return response.content

    def close(self) -> None:
        self._session.close()


def _api_error(response: requests.Response, url: str) -> MlflowApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    code = body.get("error_code", "") if isinstance(body, dict) else ""
    message = body.get("message", "") if isinstance(body, dict) else ""
    return MlflowApiError(
        f"MLflow answered HTTP {response.status_code} {code} for {redact_url(url)}: "
        f"{message or response.text[:300]}",
        error_code=code,
        status=response.status_code,
    )


class HttpBackend:
    """Reads a tracking server and a registry (possibly another server) over REST."""

    def __init__(self, tracking_uri: str, registry_uri: str, settings: HttpSettings,
                 auth=None, token: Optional[str] = None):
        self.tracking = HttpSession(tracking_uri, settings, auth, token)
        self.registry = (
            self.tracking if registry_uri.rstrip("/") == tracking_uri.rstrip("/")
            else HttpSession(registry_uri, settings, auth, token)
        )
        self.tracking_location = self.tracking.base_url
        self.registry_location = self.registry.base_url

    @property
    def requests_made(self) -> int:
        sessions = {id(s): s for s in (self.tracking, self.registry)}.values()
        return sum(s.requests_made for s in sessions)

    @property
    def retries_made(self) -> int:
        sessions = {id(s): s for s in (self.tracking, self.registry)}.values()
        return sum(s.retries_made for s in sessions)

    def search_experiments(self, view_type: str, max_results: int, page_token: Optional[str]):
        body = {"view_type": view_type, "max_results": max_results}
        if page_token:
            body["page_token"] = page_token
        out = self.tracking.call("POST", "experiments/search", json=body)
        return out.get("experiments", []), out.get("next_page_token")

    def search_runs(self, experiment_ids: list[str], filter_string: str, view_type: str,
                    max_results: int, page_token: Optional[str], order_by: Optional[list] = None):
        body: dict[str, Any] = {
            "experiment_ids": experiment_ids,
            "run_view_type": view_type,
            "max_results": max_results,
        }
        if order_by:
            body["order_by"] = order_by
        if filter_string:
            body["filter"] = filter_string
        if page_token:
            body["page_token"] = page_token
        out = self.tracking.call("POST", "runs/search", json=body)
        return out.get("runs", []), out.get("next_page_token")

    def get_run(self, run_id: str) -> Optional[dict]:
        try:
            return self.tracking.call("GET", "runs/get", params={"run_id": run_id}).get("run")
        except MlflowApiError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or exc.status == 404:
                return None
            raise

    def search_logged_models(self, experiment_ids: list[str], max_results: int, page_token: Optional[str]):
        body: dict[str, Any] = {"experiment_ids": experiment_ids, "max_results": max_results}
        if page_token:
            body["page_token"] = page_token
        out = self.tracking.call("POST", "logged-models/search", json=body)
        return out.get("models", []), out.get("next_page_token")

    def read_artifact(self, path: str) -> bytes:
        """A file the server proxies (mlflow-artifacts:/PATH)."""
        return self.tracking.get_bytes(f"/api/2.0/mlflow-artifacts/artifacts/{path.lstrip('/')}")

    def search_registered_models(self, max_results: int, page_token: Optional[str]):
        params: dict[str, Any] = {"max_results": max_results}
        if page_token:
            params["page_token"] = page_token
        out = self.registry.call("GET", "registered-models/search", params=params)
        return out.get("registered_models", []), out.get("next_page_token")

    def search_model_versions(self, filter_string: str, max_results: int, page_token: Optional[str]):
        params: dict[str, Any] = {"max_results": max_results}
        if filter_string:
            params["filter"] = filter_string
        if page_token:
            params["page_token"] = page_token
        out = self.registry.call("GET", "model-versions/search", params=params)
        return out.get("model_versions", []), out.get("next_page_token")

    def close(self) -> None:
        self.tracking.close()
        if self.registry is not self.tracking:
            self.registry.close()
