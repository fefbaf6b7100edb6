"""Signatures (a model's input columns, from its MLmodel file), read off the main thread, once
per location."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Optional

from connector.source.artifacts import mlmodel_location, read_mlmodel, signature_inputs
from connector.source.backend import Backend
from connector.source.entities import LoggedModel, ModelVersion, Run
from connector.source.errors import SourceError
from connector.source.records import CrawlObserver


def model_location(version: ModelVersion, logged_model: Optional[LoggedModel], run: Optional[Run]) -> Optional[str]:
    """Where a version's MLmodel lives: its LoggedModel's artifacts, else its source."""
    if logged_model is not None:
        return logged_model.artifact_uri
    return mlmodel_location(version.source, run.artifact_uri if run else None)


class SignatureReader:
    def __init__(self, backend: Backend, observer: CrawlObserver, executor: ThreadPoolExecutor):
        self.backend = backend
        self.observer = observer
        self.executor = executor
        self._reads: dict[Optional[str], Future] = {}

    def start(self, location: Optional[str]) -> None:
        """Begin reading `location` now (it runs while other records are mapped)."""
        if location not in self._reads:
            self._reads[location] = self.executor.submit(self._read, location)

    def get(self, location: Optional[str]) -> Optional[tuple]:
        if not location:
            return None
        self.start(location)
        return self._reads[location].result()

    def _read(self, location: Optional[str]) -> Optional[tuple]:
        if not location:
            return None
        try:
            columns = signature_inputs(read_mlmodel(location, self.backend))
            return tuple(columns) if columns is not None else None
        except Exception as exc:  # any artifact store MLflow knows, which we may not reach
            detail = str(exc) if isinstance(exc, SourceError) else f"{type(exc).__name__}: {exc}"  # ours say it all
            self.observer.warning("Signature not read", f"no MLmodel read at {location}: {detail}")
        return None
