"""MLflow stores read in-process (sqlite:///, file:, databricks, ...) through MlflowClient.

Entities are turned back into the REST JSON shape so that one parser
(`mlflow_objects.py`) serves both backends.
"""
from __future__ import annotations

import json
import os
from typing import Optional

from connector.source.errors import MlflowApiError, SourceError, SourceUnreachable


def quiet_mlflow_telemetry() -> None:
    """MLflow 3 sends telemetry, and on a machine without internet its exit can stall for
    minutes: a crawler must not phone home. MLflow reads the switch when it is first imported, so
    this runs just before the connector loads MLflow's client into a process (never on import of
    the connector); a host that set the variables keeps its own values."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")


def _to_json(entity) -> dict:
    from mlflow.utils.proto_json_utils import message_to_json

    return json.loads(message_to_json(entity.to_proto()))


class StoreBackend:
    def __init__(self, tracking_uri: str, registry_uri: str):
        quiet_mlflow_telemetry()
        try:
            from mlflow import MlflowClient
            from mlflow.entities import ViewType
            from mlflow.exceptions import MlflowException
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise SourceError(f"cannot import MLflow's client: {exc}") from exc
        self._view_type = ViewType
        self._mlflow_exception = MlflowException
        self.tracking_location = tracking_uri
        self.registry_location = registry_uri
        self.requests_made = 0
        self.retries_made = 0
        try:
            client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
            self._tracking = client._tracking_client.store
            self._registry = client._get_registry_client().store
        except ImportError as exc:
            raise SourceError(
                f"reading the MLflow store {tracking_uri} needs the full MLflow package: "
                f"pip install 'mlflow-catalog-connector[server]' ({exc})"
            ) from exc
        except Exception as exc:
            raise SourceUnreachable(f"cannot open the MLflow store {tracking_uri}: {exc}") from exc

    def _call(self, fn, *args, **kwargs):
        self.requests_made += 1
        try:
            return fn(*args, **kwargs)
        except self._mlflow_exception as exc:
            raise MlflowApiError(
                f"MLflow store {self.tracking_location}: {exc.message}",
                error_code=exc.error_code,
            ) from exc

    def _vt(self, view_type: str):
        return self._view_type.from_string(view_type.lower())

    def search_experiments(self, view_type: str, max_results: int, page_token: Optional[str]):
        page = self._call(self._tracking.search_experiments, view_type=self._vt(view_type),
                          max_results=max_results, page_token=page_token)
        return [_to_json(e) for e in page], page.token

    def search_runs(self, experiment_ids, filter_string, view_type, max_results, page_token, order_by=None):
        page = self._call(self._tracking.search_runs, experiment_ids, filter_string or "",
                          self._vt(view_type), max_results, order_by, page_token)
        return [_to_json(r) for r in page], page.token

    def get_run(self, run_id: str) -> Optional[dict]:
        try:
            return _to_json(self._call(self._tracking.get_run, run_id))
        except MlflowApiError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise

    def search_logged_models(self, experiment_ids, max_results, page_token, filter_string=""):
        search = getattr(self._tracking, "search_logged_models", None)
        if search is None:
            raise MlflowApiError("this MLflow store has no logged models", error_code="ENDPOINT_NOT_FOUND")
        page = self._call(search, experiment_ids=experiment_ids, filter_string=filter_string or None,
                          max_results=max_results, page_token=page_token)
        return [_to_json(m) for m in page], page.token

    def search_evaluation_datasets(self, max_results, page_token):
        search = getattr(self._tracking, "search_datasets", None)
        if search is None:
            raise MlflowApiError("this MLflow store has no evaluation datasets", error_code="ENDPOINT_NOT_FOUND")
        page = self._call(search, max_results=max_results, page_token=page_token)
        return [_to_json(d) for d in page], page.token

    def read_artifact(self, path: str) -> bytes:
        raise MlflowApiError(f"mlflow-artifacts:/{path} needs a tracking server", error_code="BAD_REQUEST")

    def search_registered_models(self, max_results: int, page_token: Optional[str], filter_string: str = ""):
        page = self._call(self._registry.search_registered_models, filter_string=filter_string or None,
                          max_results=max_results, page_token=page_token)
        return [_to_json(m) for m in page], page.token

    def search_model_versions(self, filter_string, max_results, page_token):
        page = self._call(self._registry.search_model_versions, filter_string or None,
                          max_results, None, page_token)
        return [_to_json(v) for v in page], page.token

    def close(self) -> None:
        pass
