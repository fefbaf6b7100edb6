"""MLflow 3 LoggedModels, listed in bulk per batch of experiments; nothing on an MLflow 2 server."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

from connector.source.backend import Backend
from connector.source.mlflow_objects import LoggedModel
from connector.source.errors import MlflowApiError
from connector.source.paging import Listing, prefetched
from connector.source.crawl_records import CrawlObserver, parsed
from connector.source.runs import _batches

LOGGED_MODELS_PAGE = 1000


@dataclass(frozen=True)
class LoggedModelIndex:
    registered: dict[str, LoggedModel] = field(default_factory=dict)  # by model id: those versions register
    unregistered: tuple[LoggedModel, ...] = ()  # include_logged_models: those no version registers
    by_run: dict[str, tuple[LoggedModel, ...]] = field(default_factory=dict)  # unregistered, by source run

    @classmethod
    def build(cls, registered: dict[str, LoggedModel], unregistered: list[LoggedModel]) -> "LoggedModelIndex":
        by_run: dict[str, list[LoggedModel]] = {}
        for lm in unregistered:
            if lm.source_run_id:
                by_run.setdefault(lm.source_run_id, []).append(lm)
        return cls(registered, tuple(unregistered), {k: tuple(v) for k, v in by_run.items()})


class LoggedModelReader:
    def __init__(self, backend: Backend, observer: CrawlObserver):
        self.backend = backend
        self.observer = observer
        self.supported = True

    def _listing(self, batch: list[str], filter_string: str) -> Listing:
        return Listing("logged-models/search",
                       lambda token: self.backend.search_logged_models(batch, LOGGED_MODELS_PAGE, token,
                                                                       filter_string))

    def list(self, experiment_ids: list[str], executor: ThreadPoolExecutor,
             filter_string: str = "") -> Iterator[LoggedModel]:
        if not self.supported or not experiment_ids:
            return
        try:
            listings = [self._listing(b, filter_string) for b in _batches(experiment_ids)]
            for _, page in prefetched(listings, executor):
                yield from parsed(page, LoggedModel.from_json, self.observer)
        except MlflowApiError as exc:
            if not exc.endpoint_missing:
                raise
            self.supported = False
            self.observer.info("No logged models", "this MLflow server has no LoggedModel API "
                                                   "(MLflow 2.x): model versions are read from their runs")
