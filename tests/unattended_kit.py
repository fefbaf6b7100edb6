"""What the unattended and wrong-server tests share: recipes with small bounds, the CLI run as a
subprocess with its report file, and the checks of what a run leaves behind (settled once, no
temporary files)."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from connector.sinks.file import read_proposals
from tests.catalog_server import CatalogServer
from tests.fault_proxy import FaultProxy

CLI = [sys.executable, "-m", "connector.cli"]
# small bounds: one attempt of a request, all of its attempts, one wait between attempts
FAST_SOURCE = {"timeout_sec": 2, "request_deadline_sec": 2, "retry_budget_sec": 3, "max_backoff_sec": 0.2,
               "max_retries": 2, "retry_backoff_sec": 0.05, "max_workers": 2}
FAST_SINK = {"timeout_sec": 2, "request_deadline_sec": 2, "retry_budget_sec": 2, "max_backoff_sec": 0.3,
             "max_retries": 3, "retry_backoff_sec": 0.05}


def write_recipe(tmp_path: Path, tracking_uri: str, sink: dict, *, name: str = "recipe.yml",
                 state: dict | None = None, pipeline: str | None = None, **source) -> Path:
    recipe: dict = {"source": {"type": "mlflow", "config": {"tracking_uri": tracking_uri, **FAST_SOURCE, **source}},
                    "sink": sink}
    if pipeline:
        recipe["pipeline_name"] = pipeline
    if state is not None:
        recipe["state"] = state
    path = tmp_path / name
    path.write_text(json.dumps(recipe), encoding="utf-8")
    return path


def file_sink(path: Path) -> dict:
    return {"type": "file", "config": {"filename": str(path)}}


def rest_sink(server: str, dead: Path, **config) -> dict:
    return {"type": "datahub-rest", "config": {"server": server, "dead_letter_file": str(dead), **FAST_SINK,
                                               "max_batch_size": 20, **config}}


def ingest(recipe: Path, tmp_path: Path, *args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess,
                                                                                    dict, float]:
    """Run the CLI; (process, report JSON, seconds it took)."""
    report_file = tmp_path / f"report-{time.monotonic_ns()}.json"
    started = time.monotonic()
    proc = subprocess.run(CLI + ["ingest", "-c", str(recipe), "--report-file", str(report_file), *args],
                          capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - started
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, json.loads(report_file.read_text(encoding="utf-8")), took


def temp_files(*directories: Path) -> list[Path]:
    return [p for d in directories for p in d.rglob("*.tmp")]


def good_output(tmp_path: Path, proxy: FaultProxy) -> tuple[Path, bytes]:
    """A complete output file from a clean run, which a failed run must leave as it is."""
    out = tmp_path / "out.json"
    proc, report, _ = ingest(write_recipe(tmp_path, proxy.url, file_sink(out), name="good.yml"), tmp_path)
    assert proc.returncode == 0 and report["proposals"] > 20, proc.stderr
    proxy.requests.clear()
    return out, out.read_bytes()


def proposal_key(record: dict) -> tuple:
    aspect = record["aspect"]
    aspect = aspect["json"] if isinstance(aspect, dict) and set(aspect) == {"json"} else aspect
    return record["entityUrn"], record["aspectName"], json.dumps(aspect, sort_keys=True)


def dead_letters(path: Path) -> list[tuple[tuple, str]]:
    """(proposal key, reason) of every dead letter, in the file's order."""
    if not path.exists():
        return []
    records = read_proposals(str(path))
    reasons = [json.loads(line) for line in Path(f"{path}.reasons.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [(r["entityUrn"], r["aspectName"]) for r in records] == [(r["entityUrn"], r["aspectName"]) for r in reasons]
    return [(proposal_key(r), why["reason"]) for r, why in zip(records, reasons, strict=True)]


def assert_settled_once(report: dict, catalog: CatalogServer, dead: Path, unknown_allowed: bool = False) -> None:
    """delivered + dead-lettered == proposals; what the catalog took is counted delivered, and is
    in the dead letters only as 'delivery unknown' (a batch on the wire when the run stopped)."""
    letters = dead_letters(dead)
    assert report["delivered"] + report["dead_lettered"] == report["proposals"]
    assert report["dead_lettered"] == len(letters)
    received = [proposal_key(r) for r in catalog.received]
    lettered = {key for key, _ in letters}
    unknown = {key for key, reason in letters if "delivery unknown" in reason}
    twice = [key for key in received if key in lettered and key not in unknown]
    assert twice == [], f"{len(twice)} delivered proposal(s) also dead-lettered"
    if not unknown_allowed:
        assert not unknown
    assert report["delivered"] == sum(key not in unknown for key in received)


def terminate(proc: subprocess.Popen, signum: int = signal.SIGTERM) -> tuple[str, str, float]:
    """SIGTERM (or `signum`); (stdout, stderr, seconds from the signal to the exit)."""
    proc.send_signal(signum)
    signalled = time.monotonic()
    out, err = proc.communicate(timeout=30)
    return out, err, time.monotonic() - signalled


def start_ingest(recipe: Path, report_file: Path) -> subprocess.Popen:
    return subprocess.Popen(CLI + ["ingest", "-c", str(recipe), "--report-file", str(report_file)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def assert_stopped_cleanly(proc, out, err, took, report_file, catalog, dead, tmp_path) -> dict:
    assert proc.returncode == 1, out + err
    assert took < 6, f"{took:.1f} s from SIGTERM to exit"
    assert "Traceback" not in err and "Aborted" not in err + out
    assert "=== MLflow ingestion report" in out and "status:     FAILURE" in out
    report = json.loads(report_file.read_text(encoding="utf-8"))
    assert report["dead_lettered"] > 0 and Path(report["dead_letter_file"]) == dead
    assert_settled_once(report, catalog, dead, unknown_allowed=True)
    assert temp_files(tmp_path) == []
    return report

