"""What the Airflow DAG factory needs from a folder of recipes, read at DAG-parse time: a name
per recipe and the pools its task takes. No Airflow import and no full validation here: secrets
referenced as ${VAR} may exist only on the workers, and a bad recipe fails its own task (with the
field named) instead of breaking the import of every DAG of the folder.

    python -m connector.integrations.recipe_plan RECIPES_DIR [--slots N]

prints the `airflow pools set ...` commands that create the pools the DAGs use.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

import yaml

POOL_PREFIX = "mlflow_catalog"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class PlannedRecipe:
    path: Path
    name: str                 # the file's stem, made safe for an Airflow id
    tracking_pool: str        # crawls against this recipe's MLflow server
    gms_pool: Optional[str]   # deliveries to its GMS (datahub-rest sink), else None

    def pool(self, pool_by: str) -> str:
        """A task has one pool: its GMS's (`pool_by="gms"`, falling back to the tracking server's
        for file sinks) or its tracking server's."""
        if pool_by == "gms":
            return self.gms_pool or self.tracking_pool
        if pool_by == "tracking_server":
            return self.tracking_pool
        raise ValueError(f"pool_by: expected 'gms' or 'tracking_server', got {pool_by!r}")


def safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "recipe"


def pool_name(kind: str, url: str) -> str:
    """`mlflow_catalog_<kind>_<host>_<port>`: one pool per server, whatever path or credentials."""
    parts = urlsplit(url)
    where = f"{parts.hostname}_{parts.port or (443 if parts.scheme == 'https' else 80)}" if parts.hostname else url
    return f"{POOL_PREFIX}_{kind}_{safe_id(where)}"


def _expand_known(text: str) -> str:
    """${VAR} from this process's environment; an unknown one stays its name (a stable pool key)."""
    return _ENV_REF.sub(lambda m: os.environ.get(m[1], m[2] if m[2] is not None else m[1]), text)


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
                         gms_pool=gms)


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
    return plans


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
    except (OSError, ValueError) as exc:
        parser.exit(2, f"error: {exc}\n")


if __name__ == "__main__":
    main()
