"""What `check` and `ingest` both require of a recipe before touching anything, beyond its
schema: a tracking URI (from the recipe or MLFLOW_TRACKING_URI), a server URI with a scheme,
a local store that exists and is MLflow's (the connector never creates one). Also the
warnings for ${VAR}s that feed values the catalog will show.
"""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlsplit

from connector.config.recipe import Recipe, RecipeError, check_url
from connector.secrets import redact_url, split_userinfo

# Recipe fields whose values are written into proposals (and so end up in the catalog).
CATALOG_FIELDS = {
    "pipeline_name": "every proposal's systemMetadata.runId",
    "source.config.base_external_url": "every externalUrl link",
    "source.config.platform_instance": "URNs and dataPlatformInstance aspects",
    "source.config.env": "every URN",
    "source.config.model_name_separator": "model URNs",
    "source.config.dataset_platform_mapping": "dataset URNs",
    "source.config.deployments": "deployment URNs and properties",
}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_LOOKS_LIKE_HOST = re.compile(r"^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)(:\d+)?/?$")


def check_runnable(recipe: Recipe, recipe_path: str | Path | None = None) -> None:
    """Raise RecipeError (naming the field) when the recipe cannot run as written."""
    _check_outputs(recipe, recipe_path)
    config = recipe.source.config
    tracking_field = "source.config.tracking_uri" if config.tracking_uri else "MLFLOW_TRACKING_URI"
    tracking = config.resolved_tracking_uri()
    check_store_uri(tracking_field, tracking)
    registry = config.resolved_registry_uri()
    if registry != tracking:
        check_store_uri("source.config.registry_uri" if config.registry_uri else "MLFLOW_REGISTRY_URI", registry)


def _same_file(a: str | Path, b: str | Path) -> bool:
    first, second = Path(a).expanduser(), Path(b).expanduser()
    try:
        if first.exists() and second.exists():
            return first.samefile(second)  # hard links and symlinks too
    except OSError:
        pass
    return first.resolve() == second.resolve()


def _check_outputs(recipe: Recipe, recipe_path: str | Path | None) -> None:
    """A file a run writes must not be one it reads: the recipe itself, or the state file."""
    sink = recipe.sink
    written = {"file": ("sink.config.filename", getattr(sink.config, "filename", None)),
               "datahub-rest": ("sink.config.dead_letter_file", getattr(sink.config, "dead_letter_file", None))}
    field, output = written.get(sink.type, ("", None))
    if not output:
        return
    kept = [("the recipe itself", recipe_path)]
    if recipe.state is not None and recipe.state.backend == "file":
        kept.append(("the state file (state.path)", recipe.state.path))
    for what, path in kept:
        if path and _same_file(output, path):
            raise RecipeError(f"{field}: {output} is {what}; a run would overwrite it: write the output elsewhere")


def check_store_uri(field: str, uri: str) -> None:
    shown = redact_url(uri)
    try:
        check_url(uri)
    except ValueError as exc:
        raise RecipeError(f"{field}: {exc}") from None
    scheme = uri.split(":", 1)[0].lower() if _SCHEME.match(uri) else ""
    bare = split_userinfo(uri)[0]  # a password may hold a '#'
    if scheme in ("http", "https") and "#" in bare:  # a page of the MLflow UI, pasted from the browser
        parts = urlsplit(bare)
        raise RecipeError(f"{field}: {shown} has a '#...' part, the address of a page in the MLflow UI; the "
                          f"tracking URI is the server's address: {scheme}://{parts.netloc}{parts.path.rstrip('/')}")
    if scheme == "sqlite":
        _check_sqlite(field, uri, shown)
    elif scheme == "file" or not (scheme or uri.lower().startswith(("databricks", "uc"))):
        _check_file_store(field, uri, shown)


def _check_sqlite(field: str, uri: str, shown: str) -> None:
    path = uri[len("sqlite:///"):].split("?", 1)[0] if uri.lower().startswith("sqlite:///") else ""
    if not path or path == ":memory:":
        raise RecipeError(f"{field}: {shown} is an in-memory database: there is nothing to read")
    db = Path(unquote(path))
    if not db.is_file():
        where = "its directory does not exist" if not db.parent.is_dir() else "no such file"
        raise RecipeError(f"{field}: the MLflow database {db} does not exist ({where}); "
                          f"a local store must exist: the connector never creates one")
    try:  # read-only: MLflow's client would create its tables in any sqlite file it opens
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise RecipeError(f"{field}: {db} is not a readable sqlite database ({exc})") from None
    if "experiments" not in tables:
        raise RecipeError(f"{field}: {db} is not an MLflow database (it has no experiments table)")


def _check_file_store(field: str, uri: str, shown: str) -> None:
    path = Path(unquote(urlsplit(uri).path) if uri.lower().startswith("file:") else uri)
    hint = (f"; for a tracking server write http://{shown}" if _LOOKS_LIKE_HOST.match(shown) else "")
    if not path.is_dir():
        raise RecipeError(f"{field}: the MLflow file store {path} does not exist; a local store must "
                          f"exist: the connector never creates one{hint}")
    if not any((child / "meta.yaml").is_file() for child in path.iterdir() if child.is_dir()) \
            and not (path / "models").is_dir():
        raise RecipeError(f"{field}: {path} is not an MLflow file store (no experiment in it){hint}")


def exposure_warnings(recipe: Recipe) -> list[str]:
    """One warning per ${VAR} that feeds a value the catalog will hold: never a secret there."""
    out = []
    for path, names in sorted(recipe.env_fields.items()):
        target = next((what for field, what in CATALOG_FIELDS.items()
                       if path == field or path.startswith((field + ".", field + "["))), None)
        if target:
            variables = ", ".join(f"${{{n}}}" for n in names)
            out.append(f"{path} comes from {variables}; its value is written into {target} "
                       f"in the catalog (never put a secret there)")
    return out

