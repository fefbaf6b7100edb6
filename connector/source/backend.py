"""What the crawler needs of an MLflow: paged listings, look-ups and artifact reads, as MLflow's
REST JSON. Two implementations: `HttpBackend` (a tracking server) and `StoreBackend` (a store
read in-process through MlflowClient)."""
from __future__ import annotations

from typing import Optional, Protocol

Page = tuple[list[dict], Optional[str]]  # items and the next page token (None or "" at the end)


class Backend(Protocol):
    tracking_location: str  # for messages: never credentials
    registry_location: str

    @property
    def requests_made(self) -> int: ...

    @property
    def retries_made(self) -> int: ...

    def search_experiments(self, view_type: str, max_results: int, page_token: Optional[str]) -> Page: ...

    def search_runs(self, experiment_ids: list[str], filter_string: str, view_type: str, max_results: int,
                    page_token: Optional[str], order_by: Optional[list[str]] = None) -> Page: ...

    def get_run(self, run_id: str) -> Optional[dict]: ...

    def search_logged_models(self, experiment_ids: list[str], max_results: int,
                             page_token: Optional[str], filter_string: str = "") -> Page: ...

    def search_evaluation_datasets(self, max_results: int, page_token: Optional[str]) -> Page: ...

    def read_artifact(self, path: str) -> bytes: ...

    def search_registered_models(self, max_results: int, page_token: Optional[str],
                                 filter_string: str = "") -> Page: ...

    def search_model_versions(self, filter_string: str, max_results: int, page_token: Optional[str]) -> Page: ...

    def close(self) -> None: ...
