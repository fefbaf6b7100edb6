"""`mlflow-catalog check`: can this recipe run? Each check names what it tried."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from connector.recipe import DatahubRestSinkConfig, Recipe, RecipeError, StateConfig
from connector.settings import gms_settings, source_connection
from connector.source.connect import open_backend
from connector.source.errors import SourceError


def run_checks(recipe: Recipe) -> Iterator[tuple[str, bool, str]]:
    yield "recipe", True, "valid"
    try:
        backend = open_backend(source_connection(recipe.source.config))
    except (SourceError, RecipeError) as exc:
        yield "mlflow", False, str(exc)
        return
    try:
        for name, location, probe in (
            ("tracking server", backend.tracking_location,
             lambda: backend.search_experiments("ACTIVE_ONLY", 1, None)),
            ("model registry", backend.registry_location,
             lambda: backend.search_registered_models(1, None)),
        ):
            try:
                probe()
            except SourceError as exc:
                yield name, False, str(exc)
            else:
                yield name, True, f"{location} answers"
    finally:
        backend.close()
    if recipe.sink.type == "datahub-rest":
        yield _check_gms(recipe)
    if recipe.sink.type == "file":
        target = Path(recipe.sink.config.filename).resolve().parent
        existing = next((p for p in (target, *target.parents) if p.exists()), None)
        writable = existing is not None and os.access(existing, os.W_OK)
        yield "file sink", writable, (f"{target} is writable" if writable
                                      else f"cannot write into {target}")
    if recipe.state is not None:
        yield _check_state(recipe, recipe.state)


def _check_state(recipe: Recipe, config: StateConfig) -> tuple[str, bool, str]:
    from connector.settings import open_state_store
    from connector.state.store import StateError

    from connector.state.catalog_store import CatalogStateStore

    name = f"state ({config.backend})"
    try:
        store = open_state_store(config, recipe.sink)
        if isinstance(store, CatalogStateStore):  # a 2xx from a proxy or a login page is no store
            store.check_server()
        state = store.load(recipe.pipeline_name or "")
    except StateError as exc:
        return name, False, str(exc)
    if not state.has_checkpoint:
        return name, True, f"no checkpoint of {recipe.pipeline_name!r} yet: the first run is a full crawl"
    return name, True, (f"checkpoint of {recipe.pipeline_name!r} from run {state.checkpoint.get('run_id')}, "
                        f"{len(state.fingerprints)} entities known")


def _check_gms(recipe: Recipe) -> tuple[str, bool, str]:
    from connector.sinks.gms_client import GmsAuthError, GmsClient, GmsRejected, GmsUnavailable

    # one retry: a check answers in seconds, it does not wait out an outage
    assert isinstance(recipe.sink.config, DatahubRestSinkConfig)
    client = GmsClient(gms_settings(recipe.sink.config, max_retries=1))
    try:
        config = client.config()
    except GmsAuthError as exc:
        return "catalog server", False, str(exc)
    except (GmsUnavailable, GmsRejected) as exc:
        return "catalog server", False, f"{client.server}/config: {exc}"
    finally:
        client.close()
    version = (config.get("versions", {}).get("acryldata/datahub", {}) or {}).get("version", "unknown")
    return "catalog server", True, f"{client.server} answers (version {version})"
