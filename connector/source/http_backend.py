"""MLflow's REST API over the connector's HTTP layer (connector/http.py).

We talk to MLflow's REST API directly rather than through MlflowClient so that
retries, timeouts and credentials stay under this process's control: MlflowClient
reads them from process-wide environment variables and retries an unreachable
server for minutes.
"""
from __future__ import annotations

from typing import Any, Optional
from urllib.parse import urlsplit

from connector.http import Answer, HttpClient, HttpSettings, RateLimiter, ResponseTooLarge, RetriesExhausted
from connector.secrets import redact_url
from connector.source.backend import Page
from connector.source.mlflow_objects import json_kind
from connector.source.errors import MlflowApiError, SourceAuthError, SourceError, SourceUnreachable

API = "/api/2.0/mlflow"
# What each endpoint answers: the key of its items and the id(s) every item holds ("a.b": nested,
# "x|y": one of). MLflow leaves out empty lists, so `{}` is a valid empty page.
_SHAPES = {
    "experiments/search": ("experiments", ("experiment_id",)),
    "runs/search": ("runs", ("info.run_id|info.run_uuid",)),
    "logged-models/search": ("models", ("info.model_id",)),
    "registered-models/search": ("registered_models", ("name",)),
    "model-versions/search": ("model_versions", ("name", "version")),
    "/api/3.0/mlflow/datasets/search": ("datasets", ("dataset_id",)),  # GenAI evaluation datasets (3.x)
}
_OPTIONAL = ("logged-models/search", "/api/3.0/mlflow/datasets/search")  # endpoints older servers lack


class UnexpectedAnswer(SourceError):
    """A 200 answer that is not what the endpoint returns (a wrong server, a proxy's page), or one
    over the size cap. Not an MlflowApiError: no fallback for a refused request may swallow it."""


def _holds(item: dict, path: str) -> bool:
    for alternative in path.split("|"):
        value: Any = item
        for key in alternative.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        if value not in (None, ""):
            return True
    return False


def _where_hint(base_url: str) -> str:
    """Why a URL may not be the tracking server's: a UI page's '#...' part, or a path after the host."""
    parts = urlsplit(base_url)
    if parts.fragment or base_url.endswith("#"):
        return (f" (the '#...' part is a page of the MLflow UI: use the server's address, "
                f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')})")
    if parts.path.strip("/"):
        return f" (is the server really mounted at the path {parts.path}?)"
    return ""


def _error(answer: Answer, base_url: str, path: str, optional: bool) -> SourceError:
    """An error answer: MLflow's own (a JSON object: its error_code and message), or not MLflow's at
    all (a web page, plain text: a wrong URL or another server), which stops the run. On an
    `optional` endpoint (one older servers lack) a 404 of any kind means "not there"."""
    body = answer.json_object()
    if body is not None:
        code, message = str(body.get("error_code", "")), str(body.get("message", ""))[:300]
        return MlflowApiError(f"MLflow answered HTTP {answer.status} {code} for {base_url}{path}: {message}",
                              error_code=code, status=answer.status)
    if optional and answer.status == 404:
        return MlflowApiError(f"{base_url}{path} answered HTTP 404", error_code="ENDPOINT_NOT_FOUND", status=404)
    return UnexpectedAnswer(f"{base_url}{path} answered {answer.describe()}, not MLflow's API: is {base_url} "
                            f"the MLflow tracking server's URL?{_where_hint(base_url)}")


def _keys(answer: dict) -> str:
    names = sorted(map(str, answer))
    return "{" + ", ".join(repr(n[:40]) for n in names[:5]) + (", ..." if len(names) > 5 else "") + "}"


class HttpBackend:
    """Reads a tracking server and a registry (possibly another server) over REST."""

    def __init__(self, tracking_uri: str, registry_uri: str, settings: HttpSettings,
                 auth: Optional[tuple[str, str]] = None, token: Optional[str] = None):
        limiter = RateLimiter(settings.max_requests_per_second, settings.stop)  # one budget for every request we make
        self.tracking = HttpClient(tracking_uri, settings, auth=auth, token=token, limiter=limiter)
        self.registry = (
            self.tracking if registry_uri.rstrip("/") == tracking_uri.rstrip("/")
            else HttpClient(registry_uri, settings, auth=auth, token=token, limiter=limiter)
        )
        self.tracking_location = self.tracking.base_url
        self.registry_location = self.registry.base_url

    def _clients(self) -> list[HttpClient]:
        return [self.tracking] if self.registry is self.tracking else [self.tracking, self.registry]

    @property
    def requests_made(self) -> int:
        return sum(c.requests_made for c in self._clients())

    @property
    def retries_made(self) -> int:
        return sum(c.retries_made for c in self._clients())

    def _answer(self, client: HttpClient, method: str, path: str, what: str, optional: bool = False,
                **kwargs) -> Answer:
        try:
            answer = client.request(method, path, **kwargs)
        except RetriesExhausted as exc:
            raise SourceUnreachable(f"MLflow at {client.base_url} did not answer {what} ({exc})") from None
        except ResponseTooLarge as exc:
            raise UnexpectedAnswer(f"MLflow at {client.base_url} answered {what} with too much: {exc} "
                                   "(source.config.max_response_mb)") from None
        if 300 <= answer.status < 400 and "location" in answer.headers:  # one the HTTP layer did not follow
            raise UnexpectedAnswer(
                f"MLflow at {client.base_url} redirected {what} to {redact_url(answer.headers['location'])} (another "
                "server, or https to http): not followed, so that credentials stay with the server they are for; "
                "put the address that answers in the recipe")
        if answer.status in (401, 403):
            raise SourceAuthError(f"MLflow at {client.base_url} rejected the credentials "
                                  f"(HTTP {answer.status}); check username/password/token")
        if answer.status >= 400:
            raise _error(answer, client.base_url, path, optional)
        return answer

    def _call(self, client: HttpClient, method: str, endpoint: str, *, params=None, body=None,
              optional: bool = False) -> dict:
        path = endpoint if endpoint.startswith("/") else f"{API}/{endpoint}"  # "/api/3.0/...": a full path
        answer = self._answer(client, method, path, endpoint, optional, params=params, json_body=body)
        data = answer.json_object()
        if data is not None:
            return data
        if not answer.body.strip():
            return {}
        raise UnexpectedAnswer(
            f"{client.base_url}{API}/{endpoint} answered {answer.describe()}, not MLflow's JSON: is "
            f"{client.base_url} the tracking server's URL, or a login page in front of it?"
            f"{_where_hint(client.base_url)}")

    def _listed(self, client: HttpClient, method: str, endpoint: str, **kwargs) -> Page:
        """One page of a listing, its shape checked: a wrong server is named, not taken for an empty MLflow."""
        out = self._call(client, method, endpoint, optional=endpoint in _OPTIONAL, **kwargs)
        key, ids = _SHAPES[endpoint]
        where = f"{client.base_url}{endpoint if endpoint.startswith('/') else f'{API}/{endpoint}'}"
        if out and key not in out and "next_page_token" not in out:
            raise UnexpectedAnswer(
                f"{where} answered {_keys(out)}, none of what MLflow's {endpoint} returns ({key!r}, "
                f"'next_page_token'): is {client.base_url} the MLflow tracking server?")
        items, token = out.get(key, []), out.get("next_page_token")
        if not isinstance(items, list) or not isinstance(token, (str, type(None))):
            raise UnexpectedAnswer(f"{where} answered {key!r} as {json_kind(items)} and 'next_page_token' as "
                                   f"{json_kind(token)}: not MLflow's answer")
        for index, item in enumerate(items):
            missing = [i for i in ids if not isinstance(item, dict) or not _holds(item, i)]
            if missing:
                raise UnexpectedAnswer(f"{where} answered an item ({key}[{index}]) without "
                                       f"{' and '.join(m.replace('|', ' or ') for m in missing)}: not MLflow's answer")
        return items, token

    def search_experiments(self, view_type: str, max_results: int, page_token: Optional[str]) -> Page:
        body: dict[str, Any] = {"view_type": view_type, "max_results": max_results}
        if page_token:
            body["page_token"] = page_token
        return self._listed(self.tracking, "POST", "experiments/search", body=body)

    def search_runs(self, experiment_ids: list[str], filter_string: str, view_type: str, max_results: int,
                    page_token: Optional[str], order_by: Optional[list[str]] = None) -> Page:
        body: dict[str, Any] = {"experiment_ids": experiment_ids, "run_view_type": view_type,
                                "max_results": max_results}
        if order_by:
            body["order_by"] = order_by
        if filter_string:
            body["filter"] = filter_string
        if page_token:
            body["page_token"] = page_token
        return self._listed(self.tracking, "POST", "runs/search", body=body)

    def get_run(self, run_id: str) -> Optional[dict]:
        try:
            out = self._call(self.tracking, "GET", "runs/get", params={"run_id": run_id})
        except MlflowApiError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or exc.status == 404:
                return None
            raise
        run = out.get("run")
        if not isinstance(run, dict) or not _holds(run, "info.run_id|info.run_uuid"):
            raise UnexpectedAnswer(f"{self.tracking.base_url}{API}/runs/get answered {_keys(out)} for run "
                                   f"{run_id}, not a run with its info.run_id: not MLflow's answer")
        return run

    def search_logged_models(self, experiment_ids: list[str], max_results: int, page_token: Optional[str],
                             filter_string: str = "") -> Page:
        body: dict[str, Any] = {"experiment_ids": experiment_ids, "max_results": max_results}
        if filter_string:
            body["filter"] = filter_string
        if page_token:
            body["page_token"] = page_token
        return self._listed(self.tracking, "POST", "logged-models/search", body=body)

    def search_evaluation_datasets(self, max_results: int, page_token: Optional[str]) -> Page:
        body: dict[str, Any] = {"max_results": max_results}
        if page_token:
            body["page_token"] = page_token
        return self._listed(self.tracking, "POST", "/api/3.0/mlflow/datasets/search", body=body)

    def read_artifact(self, path: str) -> bytes:
        """A file the server proxies (mlflow-artifacts:/PATH); rate-limited like every other request."""
        where = f"/api/2.0/mlflow-artifacts/artifacts/{path.lstrip('/')}"
        return self._answer(self.tracking, "GET", where, where, optional=True).body

    def search_registered_models(self, max_results: int, page_token: Optional[str],
                                 filter_string: str = "") -> Page:
        params: dict[str, Any] = {"max_results": max_results}
        if filter_string:
            params["filter"] = filter_string
        if page_token:
            params["page_token"] = page_token
        return self._listed(self.registry, "GET", "registered-models/search", params=params)

    def search_model_versions(self, filter_string: str, max_results: int, page_token: Optional[str]) -> Page:
        params: dict[str, Any] = {"max_results": max_results}
        if filter_string:
            params["filter"] = filter_string
        if page_token:
            params["page_token"] = page_token
        return self._listed(self.registry, "GET", "model-versions/search", params=params)

    def close(self) -> None:
        for client in self._clients():
            client.close()
