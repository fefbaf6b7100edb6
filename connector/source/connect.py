"""Open the right backend for a tracking URI: REST for http(s), MLflow's own store otherwise."""
from __future__ import annotations

from connector.source.backend import Backend
from connector.source.http_backend import HttpBackend


def open_backend(connection) -> Backend:
    """`connection`: connector.config.settings.SourceConnection (where, credentials, HTTP settings)."""
    if not connection.tracking_uri.lower().startswith(("http://", "https://")):
        from connector.source.store_backend import StoreBackend

        return StoreBackend(connection.tracking_uri, connection.registry_uri)
    return HttpBackend(connection.tracking_uri, connection.registry_uri, connection.http,
                       auth=connection.auth, token=connection.token)
