"""MLflow 3 LoggedModels, listed in bulk per batch of experiments; nothing on an MLflow 2 server."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from connector.source.backend import Backend
from connector.source.entities import LoggedModel
from connector.source.errors import MlflowApiError
from connector.source.paging import Listing, prefetched
from connector.source.records import CrawlObserver
from connector.source.runs import _batches

LOGGED_MODELS_PAGE = 1000


class LoggedModelReader:
    def __init__(self, backend: Backend, observer: CrawlObserver):
        self.backend = backend
        self.observer = observer
        self.supported = True

    def _listing(self, batch: list[str]) -> Listing:
        return Listing("logged-models/search",
                       lambda token: self.backend.search_logged_models(batch, LOGGED_MODELS_PAGE, token))

    def list(self, experiment_ids: list[str], executor: ThreadPoolExecutor) -> Iterator[LoggedModel]:
        if not self.supported or not experiment_ids:
            return
        try:
            for _, page in prefetched([self._listing(b) for b in _batches(experiment_ids)], executor):
                for raw in page:
                    yield LoggedModel.from_json(raw)
        except MlflowApiError as exc:
            if exc.status != 404 and exc.error_code not in ("ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED"):
                raise
            self.supported = False
            self.observer.info("No logged models", "this MLflow server has no LoggedModel API "
                                                   "(MLflow 2.x): model versions are read from their runs")
