"""Start a real `mlflow server` (sqlite backend, loopback, free port) for tests and benchmarks."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests

QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "DATAHUB_TELEMETRY_ENABLED": "false",
    # Without this an MLflow 3.17 server starts a 10-process job queue (1.8 GB).
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
}

# Set by `make test-fast`: a test that starts a server there is mis-marked, and fails saying so.
OFFLINE_TIER_ENV = "CONNECTOR_OFFLINE_TESTS"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def mlflow_server(root: Path, port: int | None = None, workers: int = 1, proxy_artifacts: bool = False,
                  app_name: str | None = None, env: dict | None = None):
    """Yield the URL of a server over ROOT/mlflow.db; stop it afterwards. With proxy_artifacts,
    clients reach artifacts through the server (mlflow-artifacts:/), as in most deployments."""
    if os.environ.get(OFFLINE_TIER_ENV) == "1":
        raise RuntimeError("this test starts a real mlflow server but runs in the offline tier "
                           "(make test-fast): mark it `server` (pytest.mark.server)")
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    log = open(root / "server.log", "ab")
    proc = subprocess.Popen(
        [str(mlflow_bin), "server",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         *(["--artifacts-destination", str(root / "proxied")] if proxy_artifacts
           else ["--default-artifact-root", str(root / "artifacts")]),
         *(["--app-name", app_name] if app_name else []),
         "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **QUIET_ENV, **(env or {})},
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited early; see {root / 'server.log'}")
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server at {url} not healthy after 90 s")
            time.sleep(0.3)
        yield url
    finally:
        try:
            os.killpg(proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()
