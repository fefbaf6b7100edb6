"""DataHub's `stateful_ingestion` section (of its own MLflow source) as our `state`, same meaning.

DataHub keeps a stateful source's checkpoint in GMS (its `datahub` state provider: the pipeline's
graph, or `state_provider.config.datahub_api`) and soft-deletes what a run no longer emits unless
more than `fail_safe_threshold` percent would go. Ours: `state.backend: datahub` (the checkpoint
in GMS), `remove_stale`, and `max_removal_ratio` (a fraction). Keys with no equivalent are refused
with the one that comes closest.
"""
from __future__ import annotations

from typing import Any, Optional

from datahub.configuration.common import ConfigurationError

from connector.config.recipe import StateConfig

WHERE = "source.config.stateful_ingestion"
KNOWN = {"enabled", "remove_stale_metadata", "fail_safe_threshold", "state_provider", "max_checkpoint_state_size",
         "ignore_old_state", "ignore_new_state"}
INSTEAD = "use source.config.state (path, remove_stale, max_removal_ratio) instead"


def state_from_stateful_ingestion(section: Any, graph) -> Optional[StateConfig]:
    """Our state section for DataHub's `stateful_ingestion` (None when it is not enabled)."""
    if section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigurationError(f"{WHERE}: expected a mapping (enabled, remove_stale_metadata, ...)")
    unknown = sorted(set(section) - KNOWN)
    if unknown:
        raise ConfigurationError(f"{WHERE}.{unknown[0]}: not a key of DataHub's stateful_ingestion; {INSTEAD}")
    if not section.get("enabled"):
        return None
    for key in ("ignore_old_state", "ignore_new_state"):
        if section.get(key):
            raise ConfigurationError(f"{WHERE}.{key}: not supported; to start afresh, run without the state once "
                                     f"or {INSTEAD} with a new path")
    server, token = _gms(section.get("state_provider") or {}, graph)
    threshold = section.get("fail_safe_threshold", 75.0)
    if not isinstance(threshold, (int, float)) or not 0 <= threshold <= 100:
        raise ConfigurationError(f"{WHERE}.fail_safe_threshold: a percentage from 0 to 100, got {threshold!r}")
    return StateConfig(backend="datahub", server=str(server).rstrip("/"), token=token,
                       remove_stale=bool(section.get("remove_stale_metadata", True)),
                       max_removal_ratio=threshold / 100)


def _gms(provider: dict, graph) -> tuple[str, Optional[str]]:
    """The GMS DataHub's `datahub` state provider would keep the checkpoint in, and its token."""
    if provider.get("type", "datahub") != "datahub":
        raise ConfigurationError(f"{WHERE}.state_provider.type: only 'datahub' (GMS) is supported; "
                                 f"for a local file {INSTEAD}")
    api = (provider.get("config") or {}).get("datahub_api") or {}
    server = api.get("server") or (graph.config.server if graph is not None else None)
    token = api.get("token") or (graph.config.token if graph is not None else None)
    if not server:
        raise ConfigurationError(f"{WHERE}: DataHub keeps this checkpoint in GMS, and the recipe reaches none "
                                 f"(no datahub-rest sink, no datahub_api); {INSTEAD}")
    return server, token
