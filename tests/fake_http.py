"""A scripted HTTP server on loopback, for fault tests: each request takes the next answer."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedServer:
    """answers: a list of (status, body_dict, headers), the last one repeating, or a
    function of the request dict returning one."""

    def __init__(self, answers):
        self.answers = answers if callable(answers) else list(answers)
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = {"method": self.command, "path": self.path,
                           "headers": dict(self.headers), "body": body}
                owner.requests.append(request)
                if callable(owner.answers):
                    status, payload, headers = owner.answers(request)
                else:
                    status, payload, headers = owner.answers[min(len(owner.requests), len(owner.answers)) - 1]
                raw = isinstance(payload, bytes)  # a page that is not JSON (a proxy's login page)
                data = payload if raw else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "text/html" if raw else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
