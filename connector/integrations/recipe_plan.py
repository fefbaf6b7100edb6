"""What the Airflow DAG factory needs from a folder of recipes, read at DAG-parse time: a name
per recipe and the pools its task takes. No Airflow import and no full validation here: secrets
referenced as ${VAR} may exist only on the workers, and a bad recipe fails its own task (with the
field named) instead of breaking the import of every DAG of the folder.

    python -m connector.integrations.recipe_plan RECIPES_DIR [--slots N]

prints the `airflow pools set ...` commands that create the pools the DAGs use (and, exiting 2,
the recipes it refuses).

Fleet guard: two recipes that crawl different MLflow servers into one catalog with the same
`platform_instance` (or none) and `env` would give same-named models one URN, and one server's
deletion would remove the other's model. Both are refused (their tasks fail, naming both recipes
and the fix); the other recipes of the folder run.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Optional
from urllib.parse import urlsplit

import yaml

from connector.http import default_port
from connector.config.recipe_env import RecipeError, expand_text

if TYPE_CHECKING:
    from connector.config.recipe import Recipe

POOL_PREFIX = "mlflow_catalog"


@dataclass(frozen=True)
class PlannedRecipe:
    path: Path
    name: str                 # the file's stem, made safe for an Airflow id
    tracking_pool: str        # crawls against this recipe's MLflow server
    gms_pool: Optional[str]   # deliveries to its GMS (datahub-rest sink), else None
    identity: Optional["CatalogIdentity"] = None  # None: not known at parse time (an unset ${VAR})
    refusal: Optional[str] = None  # why its task must not run (the fleet guard)

    def pool(self, pool_by: str) -> str:
        """A task has one pool: its GMS's (`pool_by="gms"`, falling back to the tracking server's
        for file sinks) or its tracking server's."""
        if pool_by == "gms":
            return self.gms_pool or self.tracking_pool
        if pool_by == "tracking_server":
            return self.tracking_pool
        raise ValueError(f"pool_by: expected 'gms' or 'tracking_server', got {pool_by!r}")


@dataclass(frozen=True)
class CatalogIdentity:
    """What the URNs of a recipe's entities depend on: which MLflow it crawls, into which catalog,
    under which platform instance and env."""

    tracking: str             # scheme://host:port/path of tracking and registry, no credentials
    catalog: str              # the GMS (host:port) of a datahub-rest sink, or "file"
    platform_instance: Optional[str]
    env: str

    def collides_with(self, other: "CatalogIdentity") -> bool:
        return (self.tracking != other.tracking and self.catalog == other.catalog
                and (self.platform_instance, self.env) == (other.platform_instance, other.env))


def safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "recipe"


def pool_name(kind: str, url: str) -> str:
    """`mlflow_catalog_<kind>_<host>_<port>`: one pool per server, whatever path or credentials."""
    parts = urlsplit(url)
    where = f"{parts.hostname}_{_port(parts.scheme, parts.port)}" if parts.hostname else url
    return f"{POOL_PREFIX}_{kind}_{safe_id(where)}"


def _port(scheme: str, port: Optional[int]) -> int:
    return port or default_port(scheme) or 80


def _expand_known(text: str) -> str:
    """${VAR} from this process's environment; an unknown one stays its name (a stable pool key)."""
    return expand_text(text, unset=lambda name: name)


def _resolved(value: object) -> Optional[str]:
    """`value` with its ${VAR}s from this process's environment; None when one is unknown here."""
    try:
        return expand_text(str(value))
    except RecipeError:
        return None


def _host(hostname: str) -> str:
    """Loopback written three ways (`localhost`, `127.0.0.1`, `[::1]`) is one machine; other names are
    compared as written (resolving them would put DNS into DAG parsing)."""
    host = hostname.lower().rstrip(".")  # `localhost.`: the same name, fully qualified
    if host == "localhost":
        return host
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    mapped = getattr(address, "ipv4_mapped", None)  # `[::ffff:127.0.0.1]` is 127.0.0.1
    return "localhost" if (mapped or address).is_loopback else host


def _server(url: str) -> str:
    parts = urlsplit(url)
    if not parts.hostname:
        return url
    where = f"{_host(parts.hostname)}:{_port(parts.scheme, parts.port)}"
    return f"{parts.scheme.lower()}://{where}{parts.path.rstrip('/')}"


def catalog_identity(source_config: dict, sink: dict) -> Optional[CatalogIdentity]:
    tracking = _resolved(source_config.get("tracking_uri") or "${MLFLOW_TRACKING_URI}")
    registry = _resolved(source_config.get("registry_uri") or "${MLFLOW_REGISTRY_URI:-}") or tracking
    instance = _resolved(source_config.get("platform_instance") or "")
    env = _resolved(source_config.get("env") or "PROD")
    if sink.get("type") == "datahub-rest":
        server = _resolved(_mapping(sink, "config").get("server") or "")
        catalog = _server(server) if server else None
    else:
        catalog = "file"
    if None in (tracking, registry, instance, env, catalog):
        return None
    where = " and ".join(dict.fromkeys(_server(str(u)) for u in (tracking, registry)))
    return CatalogIdentity(where, str(catalog), instance or None, str(env).upper())


def fleet_refusals(plans: list[PlannedRecipe]) -> dict[str, str]:
    """Recipe name -> why it is refused: another recipe gives its URNs to other objects."""
    refusals: dict[str, list[str]] = {}
    for i, one in enumerate(plans):
        for other in plans[i + 1:]:
            if one.identity and other.identity and one.identity.collides_with(other.identity):
                for this, that in ((one, other), (other, one)):
                    refusals.setdefault(this.name, []).append(_collision(this, that))
    return {name: "; ".join(reasons) for name, reasons in refusals.items()}


def _collision(this: PlannedRecipe, that: PlannedRecipe) -> str:
    assert this.identity is not None and that.identity is not None
    instance = this.identity.platform_instance
    return (f"recipes {this.path.name} and {that.path.name} crawl different MLflow servers "
            f"({this.identity.tracking}; {that.identity.tracking}) into one catalog with the same "
            f"platform_instance ({instance if instance else 'none'}) and env {this.identity.env}: same-named models "
            f"would share a URN and one server's deletion would remove the other's; set a distinct "
            f"source.config.platform_instance in each")


def schedule_refusal(recipe: "Recipe", incremental_schedule: str) -> Optional[str]:
    """Why `recipe` cannot run on the DAG's incremental schedule (None when it can): without a
    state section and `incremental: true`, every 15-minute run would be a full crawl."""
    if recipe.state is not None and recipe.source.config.incremental:
        return None
    missing = "has no state section" if recipe.state is None else "does not set source.config.incremental: true"
    return (f"the recipe runs on the incremental schedule ({incremental_schedule}) but {missing}, so every run "
            f"would be a full crawl; set source.config.incremental: true with a state section (and pipeline_name), "
            f"or give recipe_dags incremental_schedule=None to crawl in full on the full schedule only")


def _mapping(data: dict, key: str) -> dict:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def plan_recipe(path: Path) -> PlannedRecipe:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        data = None  # its task reports the error when it runs
    data = data if isinstance(data, dict) else {}
    source, sink = _mapping(data, "source"), _mapping(data, "sink")
    tracking = _expand_known(str(_mapping(source, "config").get("tracking_uri") or "${MLFLOW_TRACKING_URI}"))
    server = _mapping(sink, "config").get("server")
    gms = pool_name("gms", _expand_known(str(server))) if sink.get("type") == "datahub-rest" and server else None
    return PlannedRecipe(path=path, name=safe_id(path.stem), tracking_pool=pool_name("mlflow", tracking),
                         gms_pool=gms, identity=catalog_identity(_mapping(source, "config"), sink))


def plan_folder(folder: str | Path) -> list[PlannedRecipe]:
    """Every `*.yml` / `*.yaml` of the folder (not its subfolders), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"recipes folder {folder} does not exist")
    plans = [plan_recipe(p) for p in sorted(folder.iterdir()) if p.suffix in (".yml", ".yaml") and p.is_file()]
    names = [p.name for p in plans]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"recipes in {folder} share a name once made an Airflow id: {', '.join(clashes)}")
    refusals = fleet_refusals(plans)
    return [replace(p, refusal=refusals.get(p.name)) for p in plans]


def pool_commands(folder: str | Path, slots: int = 1) -> list[str]:
    pools = sorted({pool for plan in plan_folder(folder)
                    for pool in (plan.tracking_pool, plan.gms_pool) if pool})
    return [f'airflow pools set {pool} {slots} "mlflow-catalog: runs at once against this server"'
            for pool in pools]


def main(argv: Optional[list[str]] = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m connector.integrations.recipe_plan",
                                     description="Print the `airflow pools set` commands for a folder of recipes.")
    parser.add_argument("recipes_dir")
    parser.add_argument("--slots", type=int, default=1, help="slots of each pool (default 1)")
    args = parser.parse_args(argv)
    try:
        print("\n".join(pool_commands(args.recipes_dir, args.slots)))
        refused = sorted({p.refusal for p in plan_folder(args.recipes_dir) if p.refusal})
    except (OSError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")
    if refused:
        parser.exit(2, "".join(f"error: {reason}\n" for reason in refused))


if __name__ == "__main__":
    main()
