"""Signatures (a model's input columns, from its MLmodel file), read off the main thread, once
per location."""
from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

from connector.source.artifacts import mlmodel_location, read_mlmodel, signature_inputs
from connector.source.backend import Backend
from connector.source.mlflow_objects import LoggedModel, ModelVersion, Run
from connector.source.errors import SourceError
from connector.source.crawl_records import CrawlObserver


def model_location(version: ModelVersion, logged_model: Optional[LoggedModel], run: Optional[Run]) -> Optional[str]:
    """Where a version's MLmodel lives: its LoggedModel's artifacts, else its source."""
    if logged_model is not None:
        return logged_model.artifact_uri
    return mlmodel_location(version.source, run.artifact_uri if run else None)


HISTORY_TAG = "mlflow.log-model.history"  # MLflow 2.x: each log_model's flavors and signature


def _artifact_path(source: str, run: Run) -> Optional[str]:
    """The model's path inside its run's artifacts: runs:/<id>/<path>, or a source under the run's URI."""
    if source.startswith("runs:/"):
        parts = source[len("runs:/"):].split("/", 1)
        return parts[1].strip("/") if len(parts) > 1 else None
    base = run.artifact_uri.rstrip("/") + "/" if run.artifact_uri else None
    return source[len(base):].strip("/") if base and source.startswith(base) else None


def _signed_entries(run: Run) -> list[dict]:
    """The entries of the run's log-model history that hold a signature."""
    raw = run.tags.get(HISTORY_TAG)
    try:
        entries = json.loads(raw) if raw else None
    except ValueError:
        return []
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("signature"), dict)]


def logged_signature(run: Optional[Run], source: str) -> Optional[tuple]:
    """MLflow 2.x: the signature the run's `mlflow.log-model.history` tag recorded for the model
    at this version's artifact path (or the run's only logged model), for when its MLmodel file
    cannot be read. None when the tag holds none."""
    if run is None:
        return None
    signed = _signed_entries(run)
    path = _artifact_path(source or "", run)
    matching = [e for e in signed if path and str(e.get("artifact_path", "")).strip("/") == path]
    chosen = matching or (signed if len(signed) == 1 else [])
    if not chosen:
        return None
    columns = signature_inputs({"signature": chosen[-1]["signature"]})
    return tuple(columns) if columns is not None else None


class SignatureReader:
    def __init__(self, backend: Backend, observer: CrawlObserver, executor: ThreadPoolExecutor):
        self.backend = backend
        self.observer = observer
        self.executor = executor
        self._reads: dict[Optional[str], Future] = {}
        self._warned: set[str] = set()

    def start(self, location: Optional[str]) -> None:
        """Begin reading `location` now (it runs while other records are mapped)."""
        if location not in self._reads:
            self._reads[location] = self.executor.submit(self._read, location)

    def get(self, location: Optional[str], fallback: Optional[tuple] = None) -> Optional[tuple]:
        """The columns of the MLmodel at `location`; `fallback` (the run tag's) when it cannot be read."""
        if not location:
            return fallback
        self.start(location)
        columns, error = self._reads[location].result()
        if error is None or fallback is not None:
            return columns if error is None else fallback
        if location not in self._warned:
            self._warned.add(location)
            self.observer.warning("Signature not read", error)
        return None

    def _read(self, location: Optional[str]) -> tuple[Optional[tuple], Optional[str]]:
        """(columns or None, None) once read; (None, why) when the MLmodel could not be read."""
        if not location:
            return None, None
        try:
            columns = signature_inputs(read_mlmodel(location, self.backend))
            return (tuple(columns) if columns is not None else None), None
        except Exception as exc:  # any artifact store MLflow knows, which we may not reach
            detail = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"  # ours say it all
            return None, f"no MLmodel read at {location}: {detail}"
