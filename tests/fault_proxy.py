"""A fault-injecting HTTP proxy on loopback, in front of a real `mlflow server`.

Requests are forwarded to the server as they are, unless a rule matches their path (a substring
of it); the first matching rule decides the fault:

    proxy.add("experiments/search", "repeat_token")            # next_page_token always the same
    proxy.add("runs/search", "drip", interval_sec=0.2)         # the real answer, one byte at a time
    proxy.add("experiments/search", "huge", megabytes=40)      # a valid answer of 40 MB
    proxy.add("", "wrong_server")                              # 200 {"status": "ok"} to everything
    proxy.add("registered-models", "unavailable", retry_after="3600")  # 503 with Retry-After
    proxy.add("runs/search", "reset")                          # the connection dropped, no answer
    proxy.add("experiments/search", "rewrite", rewrite=fn)     # the real answer's JSON through fn
    proxy.add("experiments/search", "gzip_bomb", megabytes=2)  # 2 MB of gzip that decode to ~2 GB
    proxy.add("experiments/search", "endless")                 # a chunked answer that never ends
    proxy.add("", "page", status=404, title="Not Found")       # an HTML page (a web server, a UI)
    proxy.add("model-versions/search", "mlflow_error", not_matching="filter=")  # 400 with an error_code
    proxy.add("registered-models/search", "empty_pages", pages=2)  # 2 empty pages, each with a new
                                                               # token, before the real first page

A rule may be limited to its first `times` matches. Every request is recorded (method, path).
"""
from __future__ import annotations

import functools
import gzip
import http.client
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional
from urllib.parse import parse_qsl, urlencode, urlsplit

FAULTS = ("repeat_token", "drip", "huge", "wrong_server", "unavailable", "reset", "rewrite", "gzip_bomb",
          "endless", "page", "mlflow_error", "empty_pages")
_EMPTY_TOKEN = "empty-page-"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


def send_answer(handler: BaseHTTPRequestHandler, status: int, headers: list, data: bytes,
                skip: frozenset | set = _HOP_BY_HOP) -> None:
    """An upstream answer passed on: its headers but the hop-by-hop ones (`skip`), a fresh length."""
    handler.send_response(status)
    for key, value in headers:
        if key.lower() not in skip:
            handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def _without_page_token(path: str) -> str:
    parts = urlsplit(path)
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "page_token"])
    return parts.path + (f"?{query}" if query else "")


@functools.lru_cache(maxsize=1)
def _gzip_member() -> bytes:
    return gzip.compress(b" " * (64 * 1024 * 1024), compresslevel=9, mtime=0)


@dataclass
class Rule:
    match: str
    fault: str
    times: Optional[int] = None  # None: every match
    interval_sec: float = 0.2    # drip: between two bytes
    megabytes: int = 40          # huge: size of the answer
    declare_length: bool = False  # huge: send Content-Length (else the size is only known by reading)
    retry_after: str = "3600"    # unavailable
    rewrite: Optional[Callable[[dict], dict]] = None
    status: int = 404            # page
    title: str = "Not Found"     # page
    not_matching: str = ""       # the rule skips paths holding this
    error_code: str = "INVALID_PARAMETER_VALUE"  # mlflow_error
    pages: int = 2               # empty_pages: how many, in a row
    items_key: str = "registered_models"  # empty_pages: the listing's key for its items
    used: int = 0


class FaultProxy:
    def __init__(self, upstream: str):
        target = urlsplit(upstream)
        self.upstream_host, self.upstream_port = target.hostname or "127.0.0.1", target.port or 80
        self.rules: list[Rule] = []
        self.requests: list[tuple[str, str]] = []
        self.bytes_sent: dict[str, int] = {}  # fault -> body bytes it got onto the wire
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: the end of a body is its close

            def log_message(self, *args):
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.requests.append((self.command, self.path))
                rule = owner._rule_for(self.path)
                try:
                    if rule is None:
                        self._send(*owner._forward(self.command, self.path, self.headers, body))
                    else:
                        getattr(self, f"_fault_{rule.fault}")(rule, body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: what the faults are for

            do_GET = do_POST = _handle

            def _send(self, status: int, headers: list, data: bytes) -> None:
                send_answer(self, status, headers, data)

            def _send_json(self, status: int, payload, extra: Optional[dict] = None) -> None:
                headers = [("Content-Type", "application/json"), *(extra or {}).items()]
                self._send(status, headers, json.dumps(payload).encode())

            def _forwarded_json(self, body: bytes) -> tuple[int, list, dict]:
                status, headers, data = owner._forward(self.command, self.path, self.headers, body)
                return status, headers, json.loads(data or b"{}")

            def _fault_repeat_token(self, rule: Rule, body: bytes) -> None:
                # a server that ignores the token: the first page again, and the same token with it
                self.path = _without_page_token(self.path)
                if body:
                    request = json.loads(body)
                    request.pop("page_token", None)
                    body = json.dumps(request).encode()
                status, headers, payload = self._forwarded_json(body)
                payload["next_page_token"] = "the-same-token-again"
                self._send(status, headers, json.dumps(payload).encode())

            def _fault_empty_pages(self, rule: Rule, body: bytes) -> None:
                # a registry that filters server-side (Databricks): empty pages that still carry a
                # next-page token come before the real ones
                request = json.loads(body) if body else {}
                token = request.get("page_token") or dict(parse_qsl(urlsplit(self.path).query)).get("page_token")
                token = token or ""
                if not token or token.startswith(_EMPTY_TOKEN):
                    done = int(token[len(_EMPTY_TOKEN):]) if token else 0
                    if done < rule.pages:
                        return self._send_json(200, {rule.items_key: [],
                                                     "next_page_token": f"{_EMPTY_TOKEN}{done + 1}"})
                    self.path = _without_page_token(self.path)
                    request.pop("page_token", None)
                    body = json.dumps(request).encode() if body else body
                self._send(*owner._forward(self.command, self.path, self.headers, body))

            def _fault_rewrite(self, rule: Rule, body: bytes) -> None:
                status, headers, payload = self._forwarded_json(body)
                assert rule.rewrite is not None
                self._send(status, headers, json.dumps(rule.rewrite(payload)).encode())

            def _fault_mlflow_error(self, rule: Rule, body: bytes) -> None:
                self._send_json(400, {"error_code": rule.error_code, "message": "refused by the fault proxy"})

            def _fault_drip(self, rule: Rule, body: bytes) -> None:
                status, headers, data = owner._forward(self.command, self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.flush()
                for i in range(len(data)):
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    owner._count("drip", 1)
                    time.sleep(rule.interval_sec)

            def _fault_huge(self, rule: Rule, body: bytes) -> None:
                # a valid answer: one experiment per item, each with a long name
                item = json.dumps({"experiment_id": "1", "name": "x" * 1000, "lifecycle_stage": "active"}).encode()
                count = rule.megabytes * 1024 * 1024 // (len(item) + 1)
                head, tail = b'{"experiments": [', b"]}"
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if rule.declare_length:
                    self.send_header("Content-Length", str(len(head) + count * (len(item) + 1) - 1 + len(tail)))
                self.end_headers()
                self.wfile.write(head)
                chunk = b",".join([item] * 64)
                written = 0
                while written < count:
                    n = min(64, count - written)
                    data = chunk if n == 64 else b",".join([item] * n)
                    self.wfile.write((b"," if written else b"") + data)
                    owner._count("huge", len(data) + (1 if written else 0))
                    written += n
                self.wfile.write(tail)

            def _fault_gzip_bomb(self, rule: Rule, body: bytes) -> None:
                # gzip members of 64 MB of spaces each (~64 KB compressed), back to back
                member = _gzip_member()
                count = max(1, rule.megabytes * 1024 * 1024 // len(member))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(member) * count))
                self.end_headers()
                for _ in range(count):
                    self.wfile.write(member)
                    owner._count("gzip_bomb", len(member))

            def _fault_endless(self, rule: Rule, body: bytes) -> None:
                # HTTP/1.1 chunked, never a last chunk: only the client can end it
                self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                chunk = b" " * (256 * 1024)
                frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
                self.wfile.write(b"1\r\n[\r\n")
                while True:
                    self.wfile.write(frame)
                    owner._count("endless", len(chunk))

            def _fault_page(self, rule: Rule, body: bytes) -> None:
                lines = "".join(f"<p>line {i} of a page nobody should print</p>\n" for i in range(600))
                page = (f"<!doctype html>\n<html><head><title>{rule.title}</title></head>\n<body>\n{lines}"
                        "</body></html>\n").encode()
                self._send(rule.status, [("Content-Type", "text/html; charset=utf-8")], page)

            def _fault_wrong_server(self, rule: Rule, body: bytes) -> None:
                self._send_json(200, {"status": "ok"})

            def _fault_unavailable(self, rule: Rule, body: bytes) -> None:
                self._send_json(503, {"message": "maintenance"}, {"Retry-After": rule.retry_after})

            def _fault_reset(self, rule: Rule, body: bytes) -> None:
                # SO_LINGER 0: close() sends a RST instead of a FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add(self, match: str, fault: str, **options) -> Rule:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {FAULTS}")
        rule = Rule(match, fault, **options)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()
            self.requests.clear()
            self.bytes_sent.clear()

    def _rule_for(self, path: str) -> Optional[Rule]:
        with self._lock:
            for rule in self.rules:
                skipped = rule.not_matching and rule.not_matching in path
                if rule.match in path and not skipped and (rule.times is None or rule.used < rule.times):
                    rule.used += 1
                    return rule
        return None

    def _count(self, fault: str, size: int) -> None:
        with self._lock:
            self.bytes_sent[fault] = self.bytes_sent.get(fault, 0) + size

    def _forward(self, method: str, path: str, headers, body: bytes) -> tuple[int, list, bytes]:
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            forwarded = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP | {"host"}}
            connection.request(method, path, body=body or None, headers=forwarded)
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()

    def start(self) -> "FaultProxy":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
