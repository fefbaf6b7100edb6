"""The state store a recipe's `state` section asks for: a local file, or the catalog (GMS).

Both have `load(pipeline) -> PipelineState` and `save(pipeline, state)`.
"""
from __future__ import annotations


def open_state_store(state, sink):
    """`state`: the recipe's StateConfig; `sink`: its sink section (the datahub backend borrows
    the datahub-rest sink's server and token unless `state.server` is set)."""
    if state.backend == "file":
        from connector.state.store import StateFile

        return StateFile(state.path)
    from connector.state.catalog_store import CatalogConnection, CatalogStateStore

    if state.server:
        token = state.token.get_secret_value() if state.token else None
        return CatalogStateStore(CatalogConnection(server=state.server, token=token))
    c = sink.config  # the recipe validator made sure this is the datahub-rest sink
    return CatalogStateStore(CatalogConnection(
        server=c.server, token=c.token.get_secret_value() if c.token else None, timeout_sec=c.timeout_sec,
        max_retries=c.max_retries, retry_backoff_sec=c.retry_backoff_sec,
        verify=False if c.disable_ssl_verification else (c.ca_certificate_path or True),
        extra_headers=dict(c.extra_headers)))
