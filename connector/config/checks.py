"""`mlflow-catalog check`: can this recipe run? Each check names what it tried."""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import Callable, Iterator, Optional

from connector.config.recipe import DatahubRestSinkConfig, Recipe, RecipeError, StateConfig
from connector.config.settings import gms_settings, source_connection
from connector.source.connect import open_backend
from connector.source.errors import SourceError


CHECK_TIMEOUT_SEC = 20.0


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
        yield _bounded("catalog server", lambda: _check_gms(recipe))
    if recipe.sink.type == "file":
        target = Path(recipe.sink.config.filename).resolve().parent
        problem = folder_problem(target)
        yield "file sink", problem is None, problem or f"{target} is writable"
    state = recipe.state
    if state is not None:
        yield _bounded(f"state ({state.backend})", lambda: _check_state(recipe, state))


def folder_problem(folder: Path) -> Optional[str]:
    """Why files cannot be made in `folder` (created as a run would), or None: a file is made and
    removed in the nearest folder that exists (permission bits say nothing to root, nor about a
    read-only mount or an immutable folder)."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        return f"cannot write into {folder}: no folder above it exists"
    if not existing.is_dir():
        return f"cannot write into {folder}: {existing} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".mlflow-catalog-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"cannot write into {folder}: {existing} is not writable ({exc.strerror})"
    return None


def _bounded(name: str, check: Callable[[], tuple[str, bool, str]]) -> tuple[str, bool, str]:
    """A check that answers within CHECK_TIMEOUT_SEC, whatever the server does (a server that drips
    its answer holds a request up to its deadline, minutes): the attempt is left behind."""
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(check()), name="check", daemon=True)
    worker.start()
    worker.join(CHECK_TIMEOUT_SEC)
    if not outcome:
        return name, False, f"no answer within {CHECK_TIMEOUT_SEC:g} s"
    return outcome[0]


def _check_state(recipe: Recipe, config: StateConfig) -> tuple[str, bool, str]:
    from connector.config.settings import open_state_store
    from connector.state.store import StateError

    from connector.state.catalog_store import GmsStateStore

    name = f"state ({config.backend})"
    if config.backend == "file":
        problem = folder_problem(Path(config.path).resolve().parent)
        if problem:
            return name, False, f"{problem}; each run saves its checkpoint there"
    try:
        store = open_state_store(config, recipe.sink)
        if isinstance(store, GmsStateStore):  # a 2xx from a proxy or a login page is no store
            store.check_server()
        state = store.load(recipe.pipeline_name or "")
    except StateError as exc:
        return name, False, str(exc)
    if not state.has_checkpoint:
        return name, True, f"no checkpoint of {recipe.pipeline_name!r} yet: the first run is a full crawl"
    return name, True, (f"checkpoint of {recipe.pipeline_name!r} from run {state.checkpoint.get('run_id')}, "
                        f"{len(state.fingerprints)} entities known")


def _check_gms(recipe: Recipe) -> tuple[str, bool, str]:
    from connector.sinks.gms_client import GmsAuthError, GmsClient, GmsNotGms, GmsRejected, GmsUnavailable

    # one retry: a check answers in seconds, it does not wait out an outage
    assert isinstance(recipe.sink.config, DatahubRestSinkConfig)
    client = GmsClient(gms_settings(recipe.sink.config, max_retries=1))
    try:
        config = client.config()
    except (GmsAuthError, GmsNotGms) as exc:  # their messages name the URL
        return "catalog server", False, str(exc)
    except (GmsUnavailable, GmsRejected) as exc:
        return "catalog server", False, f"{client.server}/config: {exc}"
    finally:
        client.close()
    version = (config.get("versions", {}).get("acryldata/datahub", {}) or {}).get("version", "unknown")
    return "catalog server", True, f"{client.server} answers (version {version})"
