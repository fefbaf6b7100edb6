"""Hostile servers on loopback for the secret and redirect tests.

    EchoProxy(upstream, echo="registered-models")  # forwards to a real server; requests whose path
                                                   # holds `echo` get HTTP 400 repeating every header
                                                   # and the body they came with (an MLflow-shaped error)
    Redirector(target, status=307)                 # answers every request with a redirect to `target`
                                                   # + the same path; records the headers it was sent
    Redirector(None)                               # redirects to itself (/moved + the path), where it
                                                   # answers 200 with the headers it was sent
"""
from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional
from urllib.parse import urlsplit

from tests.fault_proxy import send_answer

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class _Server:
    def __init__(self, handler_class):
        self.requests: list[dict] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
        self.server.daemon_threads = True
        self.server.owner = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def _send(self, status: int, headers: list, data: bytes) -> None:
        send_answer(self, status, headers, data, skip=_HOP_BY_HOP)

    def do_GET(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        owner = self.server.owner  # type: ignore[attr-defined]
        owner.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                               "body": body})
        self.answer(owner, body)

    do_POST = do_GET

    def answer(self, owner, body: bytes) -> None:
        raise NotImplementedError


class _EchoHandler(_Handler):
    def answer(self, owner, body: bytes) -> None:
        if owner.echo is not None and owner.echo in self.path:
            said = f"{self.command} {self.path} {dict(self.headers)} {body.decode(errors='replace')}"
            payload = {"error_code": "INVALID_PARAMETER_VALUE", "message": f"cannot serve what you sent: {said}"}
            return self._send(400, [("Content-Type", "application/json")], json.dumps(payload).encode())
        target = urlsplit(owner.upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            connection.request(self.command, self.path, body=body or None, headers=headers)
            answer = connection.getresponse()
            self._send(answer.status, answer.getheaders(), answer.read())
        finally:
            connection.close()


class EchoProxy(_Server):
    def __init__(self, upstream: str, echo: Optional[str] = None):
        self.upstream = upstream
        self.echo = echo
        super().__init__(_EchoHandler)


class _RedirectHandler(_Handler):
    def answer(self, owner, body: bytes) -> None:
        if self.path.startswith("/moved"):
            payload = {"value": [], "headers": dict(self.headers)}
            return self._send(200, [("Content-Type", "application/json")], json.dumps(payload).encode())
        self._send(owner.status, [("Location", owner.target + self.path)], b"")


class Redirector(_Server):
    def __init__(self, target: Optional[str], status: int = 307):
        self.status = status
        super().__init__(_RedirectHandler)
        self.target = target.rstrip("/") if target else self.url + "/moved"
