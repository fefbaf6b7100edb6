"""Open the right backend for a tracking URI, with credentials kept in this process's objects."""
from __future__ import annotations

import os
from typing import Optional

from connector.recipe import MlflowSourceConfig
from connector.source.http_backend import HttpBackend, HttpSettings, redact_url
from connector.source.store_backend import StoreBackend


def is_http(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


def _secret(value) -> Optional[str]:
    return value.get_secret_value() if value is not None else None


def open_backend(config: MlflowSourceConfig):
    tracking_uri = config.resolved_tracking_uri()
    registry_uri = config.resolved_registry_uri()
    if not is_http(tracking_uri):
        return StoreBackend(tracking_uri, registry_uri)
    username = config.username or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = _secret(config.password) or os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = _secret(config.token) or os.environ.get("MLFLOW_TRACKING_TOKEN")
    verify = True
    if config.disable_ssl_verification or os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        verify = False
    elif config.ca_certificate_path or os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        verify = config.ca_certificate_path or os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    settings = HttpSettings(
        timeout_sec=config.timeout_sec,
        max_retries=config.max_retries,
        retry_backoff_sec=config.retry_backoff_sec,
        retry_budget_sec=config.retry_budget_sec,
        max_requests_per_second=config.max_requests_per_second,
        verify=verify,
    )
    auth = (username, password or "") if username else None
    return HttpBackend(tracking_uri, registry_uri if is_http(registry_uri) else tracking_uri,
                       settings, auth=auth, token=token)


def external_base_url(config: MlflowSourceConfig) -> Optional[str]:
    if config.base_external_url:
        return config.base_external_url
    uri = config.resolved_tracking_uri()
    return redact_url(uri) if is_http(uri) else None
