"""One HTTP layer for every server the connector talks to: MLflow's tracking server and registry,
artifact reads through the tracking server, and the catalog server (GMS).

- one retry policy: retryable statuses, exponential backoff with jitter under a cap, a
  `Retry-After` (seconds or HTTP-date) honoured but never above the cap, and a total time budget;
- a wall-clock deadline per attempt (connect, headers and the whole body), not only a socket read
  timeout, so a server that drips its answer cannot hold a run;
- a cap on the size of an answer;
- one `requests.Session` per thread (sessions are not thread-safe), and a shared rate limit;
- waits that end at once when the run is told to stop (its `StopToken`, in the settings);
- redirects followed only to the same origin (scheme, host and port; or http to https on the same
  host): the token, basic credentials and extra headers never go to another server (requests
  strips only `Authorization` on a host change), and the caller gets the redirect answer itself
  (a 3xx, never another server's answer in its place).
Callers classify what an answer means for their server (401 -> bad credentials, ...).
"""
from __future__ import annotations

import email.utils
import html
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import urljoin, urlsplit

import requests

from connector.stopping import StopToken
from connector.http_body import decoded, transport_problem
from connector.secrets import split_userinfo, url_credentials

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_TITLE_SEARCH = 64 * 1024  # an HTML page's <title> is looked for in its first bytes only
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_POLL_SEC = 0.2
STOP_GRACE_SEC = 3.0  # after a stop, how long an attempt on the wire may still take to be answered


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or malformed."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if parsed is None or parsed.tzinfo is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_sec: float = 0.5
    max_backoff_sec: float = 30.0
    budget_sec: float = 60.0  # all attempts of one request and the waits between them
    retryable_statuses: frozenset = RETRYABLE_STATUSES

    def delay(self, attempt: int, retry_after: Optional[float]) -> float:
        """How long to wait before attempt number `attempt + 1` (attempt counts from 1)."""
        if retry_after is not None:
            return min(retry_after, self.max_backoff_sec)
        base = self.backoff_sec * (2 ** min(attempt - 1, 30))
        return min(self.max_backoff_sec, base * (0.5 + random.random()))


@dataclass(frozen=True)
class HttpSettings:
    timeout_sec: float = 30.0          # one socket read
    connect_timeout_sec: float = 5.0
    deadline_sec: float = 300.0        # one attempt, wall clock: connect, headers and the whole body
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_requests_per_second: Optional[float] = None
    max_response_bytes: int = 512 * 1024 * 1024
    verify: Any = True
    stop: StopToken = field(default_factory=StopToken, compare=False)  # the run's: ends every wait


class TransportError(Exception):
    """No (complete) answer: connection refused or reset, timeout, deadline passed."""


class RetriesExhausted(Exception):
    """Every attempt allowed by the policy failed; the message says how the last one did."""


class ResponseTooLarge(Exception):
    """An answer over the configured size cap: not read further."""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else {}

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "no content type")

    def text(self, limit: int = 500) -> str:
        return self.body[:limit].decode("utf-8", errors="replace")

    def json_object(self) -> Optional[dict]:
        """The body as a JSON object, or None when it is not one (a page, plain text, nothing)."""
        try:
            data = json.loads(self.body) if self.body.strip() else None
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def describe(self) -> str:
        """What answered, in one line: the status and the kind of body, an HTML page by its
        <title> (never the page itself)."""
        head = self.body[:_TITLE_SEARCH].decode("utf-8", errors="replace")
        kind = self.content_type.split(";")[0].strip()
        if "html" in kind or head.lstrip()[:15].lower().startswith(("<!doctype html", "<html")):
            found = _TITLE.search(head)
            title = " ".join(html.unescape(found.group(1)).split())[:100] if found else ""
            return f"HTTP {self.status} with an HTML page " + (f"titled {title!r}" if title else "without a title")
        if not self.body.strip():
            return f"HTTP {self.status} with an empty body"
        first = " ".join(head.split())[:80]
        return f"HTTP {self.status} with {kind or 'a body'}: {first!r}"


class RateLimiter:
    def __init__(self, per_second: Optional[float], stop: Optional[StopToken] = None):
        self._stop = stop or StopToken()
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
            self._stop.sleep(delay)


_DEFAULT_PORTS = {"http": 80, "https": 443}


def default_port(scheme: str) -> Optional[int]:
    """The port an http(s) URL without one reaches; None for other schemes."""
    return _DEFAULT_PORTS.get(scheme.lower())


def same_origin(url: str, target: str) -> bool:
    """Whether a redirect from `url` to `target` stays with the same server: same scheme, host and
    port, or an upgrade from http to https on the same host at the default ports."""
    old, new = urlsplit(url), urlsplit(target)
    try:
        old_port = old.port or default_port(old.scheme)
        new_port = new.port or default_port(new.scheme)
    except ValueError:  # a port that is not a number
        return False
    if (old.hostname or "").lower() != (new.hostname or "").lower():
        return False
    if (old.scheme, old_port) == (new.scheme, new_port):
        return True
    return (old.scheme, old_port, new.scheme, new_port) == ("http", 80, "https", 443)


class _SameOriginSession(requests.Session):
    """A session that follows a redirect only within the same origin; any other redirect ends the
    request with the redirect answer itself."""

    def get_redirect_target(self, resp):
        target = super().get_redirect_target(resp)
        if target is not None and not same_origin(resp.url, urljoin(resp.url, target)):
            return None
        return target


class HttpClient:
    """Requests to one server (one base URL): auth, headers, retries, deadline, size cap, counting."""

    def __init__(self, base_url: str, settings: HttpSettings, *, auth: Optional[tuple[str, str]] = None,
                 token: Optional[str] = None, headers: Optional[dict] = None,
                 limiter: Optional[RateLimiter] = None):
        self.base_url = split_userinfo(base_url.rstrip("/"))[0]  # credentials never appear in messages
        url_auth = url_credentials(base_url)
        self.settings = settings
        self._headers = dict(headers or {})
        if token:  # a bearer token wins over basic credentials
            self._headers["Authorization"] = f"Bearer {token}"
            self._auth = None
        else:
            self._auth = auth or url_auth
        self._limiter = limiter or RateLimiter(settings.max_requests_per_second, settings.stop)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.requests_made = 0
        self.retries_made = 0

    def __repr__(self) -> str:  # never credentials
        return f"HttpClient({self.base_url!r})"

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = _SameOriginSession()
            session.verify = self.settings.verify
            session.headers.update(self._headers)
            if self._auth is not None:
                session.auth = self._auth
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _count(self, retry: bool = False) -> None:
        with self._lock:
            if retry:
                self.retries_made += 1
            else:
                self.requests_made += 1

    def request(self, method: str, path: str, *, params=None, json_body=None, data: Optional[bytes] = None,
                retry: bool = True) -> Answer:
        """The first answer that is not a retryable failure; RetriesExhausted when none came."""
        policy = self.settings.retry
        budget_ends = time.monotonic() + policy.budget_sec
        attempt = 0
        while True:
            self.settings.stop.check()
            self._limiter.wait()
            self._count()
            retry_after = None
            try:
                answer = self._once(method, f"{self.base_url}{path}", params, json_body, data)
            except TransportError as exc:
                problem = str(exc)
            else:
                if answer.status not in policy.retryable_statuses:
                    return answer
                problem = answer.describe()  # an HTML page by its title, never the page
                retry_after = parse_retry_after(answer.headers.get("retry-after"))
            attempt += 1
            wait = policy.delay(attempt, retry_after)
            if not retry or attempt > policy.max_retries or time.monotonic() + wait > budget_ends:
                raise RetriesExhausted(f"{problem}, after {attempt} attempt(s)")
            self._count(retry=True)
            self.settings.stop.sleep(wait)

    def _once(self, method: str, url: str, params, json_body, data) -> Answer:
        """One attempt, in a thread of its own so that its deadline holds in every phase: a server
        that drips its headers never returns from `requests` (each byte resets the socket timeout).
        A stuck attempt is left behind (a daemon thread, its session no longer used here)."""
        session = self._session()
        outcome: dict = {}
        finished = threading.Event()

        def attempt() -> None:
            try:
                outcome["answer"] = self._attempt(session, method, url, params, json_body, data)
            except BaseException as exc:  # handed to the caller below
                outcome["error"] = exc
            finally:
                finished.set()

        threading.Thread(target=attempt, name="http-attempt", daemon=True).start()
        self._await(finished)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["answer"]

    def _await(self, finished: threading.Event) -> None:
        """Until the attempt ends, or its deadline passes (the body reader's own check comes first),
        or a stop was requested STOP_GRACE_SEC ago (an answer on its way may still say the server
        took a batch): no thread waits on a stopped run for longer than that."""
        ends = time.monotonic() + self.settings.deadline_sec + 1.0
        stop_seen: Optional[float] = None
        while not finished.wait(_POLL_SEC):
            now = time.monotonic()
            if now > ends:
                self._local.session = None
                raise TransportError(f"no complete answer within {self.settings.deadline_sec:g} s")
            if stop_seen is None and self.settings.stop.requested():
                stop_seen = now
            if stop_seen is not None and now - stop_seen > STOP_GRACE_SEC:
                self._local.session = None
                self.settings.stop.check()

    def _attempt(self, session: requests.Session, method: str, url: str, params, json_body, data) -> Answer:
        settings = self.settings
        deadline = time.monotonic() + settings.deadline_sec
        try:
            response = session.request(
                method, url, params=params, json=json_body, data=data, stream=True,
                timeout=(settings.connect_timeout_sec, min(settings.timeout_sec, settings.deadline_sec)))
        except requests.exceptions.RequestException as exc:
            raise TransportError(transport_problem(exc)) from None
        try:
            body = self._read_body(response, deadline)
        finally:
            response.close()
        return Answer(response.status_code, {k.lower(): v for k, v in response.headers.items()}, body)

    def _read_body(self, response: requests.Response, deadline: float) -> bytes:
        declared = response.headers.get("Content-Length", "")
        cap = self.settings.max_response_bytes
        if declared.isdigit() and int(declared) > cap:
            raise ResponseTooLarge(f"answer of {int(declared):,} bytes is over the {cap:,}-byte cap")
        chunks, size = [], 0
        try:
            # the cap counts decoded bytes: what the answer takes in memory
            for chunk in decoded(response.raw, response.headers.get("Content-Encoding", "")):
                if time.monotonic() > deadline:
                    raise TransportError(f"no complete answer within {self.settings.deadline_sec:g} s")
                # (no stop check here: an answer on its way may say the server took a batch)
                size += len(chunk)
                if size > cap:
                    raise ResponseTooLarge(f"answer over the {cap:,}-byte cap")
                chunks.append(chunk)
        except (requests.exceptions.RequestException, OSError, ValueError) as exc:
            raise TransportError(transport_problem(exc)) from None
        except Exception as exc:  # urllib3's own errors (ProtocolError, ReadTimeoutError, ...)
            if type(exc).__module__.startswith("urllib3"):
                raise TransportError(transport_problem(exc)) from None
            raise
        return b"".join(chunks)

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
