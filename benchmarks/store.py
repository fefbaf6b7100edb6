"""Build (and cache) a generated MLflow sqlite store of a given size for the benchmarks.

MLflow's client creates the schema (its own migrations run) and the experiments; the bulk of
runs, params, metrics, tags, datasets and MLflow 3 LoggedModels (with their params, metrics and
MLmodel files) goes in with plain SQL, `executemany` in one transaction per 5,000 runs, the rows
MLflow's client would write (creating 50,000 runs and 5,000 LoggedModels through the client took
21 minutes). The registry goes through MLflow's client so that its own bookkeeping (latest
versions, aliases) is MLflow's.

    python -m benchmarks.store [EXPERIMENTS RUNS_PER_EXPERIMENT]   # build (or find) a store, say how long
"""
from __future__ import annotations

import json
import random
import sqlite3
import time
import uuid
from pathlib import Path

CACHE = Path(__file__).resolve().parent.parent / ".bench"


def store_path(experiments: int, runs_per_experiment: int, models: int, versions: int) -> Path:
    return CACHE / f"store-e{experiments}-r{runs_per_experiment}-m{models}-v{versions}-lm" / "mlflow.db"


LOGGED_MODEL_EVERY = 10  # one MLflow 3 LoggedModel (with an MLmodel signature on disk) per 10 runs
MLMODEL = """artifact_path: {path}
flavors: {{python_function: {{loader_module: mlflow.pyfunc.model}}}}
model_id: {model_id}
signature:
  inputs: '[{columns}]'
  outputs: '[{{"type": "double", "name": "score", "required": true}}]'
  params: null
"""


# MLflow's schema has no index for its run search's order (start_time DESC, run_uuid): SQLite then
# sorts every run of the experiments for each page, and a page at offset k of a million runs took
# ~10 s (a 1M-run crawl: hours, all of it the server). A production database of that size would
# have one; with it a page walks the index. Every store gets it, so floor and ours alike.
RUN_ORDER_INDEX = ("CREATE INDEX IF NOT EXISTS bench_runs_search_order "
                   "ON runs(start_time DESC, run_uuid, experiment_id, lifecycle_stage)")


def with_run_order_index(db: Path) -> Path:
    con = sqlite3.connect(db)
    try:
        con.execute(RUN_ORDER_INDEX)
        con.commit()
    finally:
        con.close()
    return db


def build_store(experiments: int = 20, runs_per_experiment: int = 250, models: int = 100,
                versions: int = 10, seed: int = 1) -> Path:
    db = store_path(experiments, runs_per_experiment, models, versions)
    if (db.parent / "complete").exists():
        return with_run_order_index(db)
    import logging
    import warnings

    from mlflow import MlflowClient

    started = time.perf_counter()
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{db}")  # the registry resolves models:/ sources through it
    client = MlflowClient(f"sqlite:///{db}")  # creates the schema: MLflow's own migrations run
    rng = random.Random(seed)
    exp_ids = [client.create_experiment(f"experiment-{e:03d}", tags={"team": f"team-{e % 4}"},
                                        artifact_location=str(db.parent / "artifacts" / f"e{e}"))
               for e in range(experiments)]
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=OFF")  # a throw-away build: a crash deletes it (no `complete` mark)
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-1000000")  # 1 GB of page cache: the primary keys are random UUIDs
    secondary = _drop_secondary_indexes(con)  # rebuilt once at the end: cheaper than kept per row
    run_ids: list[str] = []
    logged_model_ids: list[str] = []
    for exp_index, exp_id in enumerate(exp_ids):
        dataset_uuid = uuid.uuid4().hex
        con.execute("INSERT INTO datasets VALUES (?,?,?,?,?,?,?,?)", (
            dataset_uuid, int(exp_id), f"dataset-{exp_index:03d}", f"{exp_index:08x}", "s3",
            json.dumps({"uri": f"s3://bench/data/{exp_index}.parquet"}), DATASET_SCHEMA,
            json.dumps({"num_rows": 1000})))
        artifacts = db.parent / "artifacts" / f"e{exp_index}"
        for first in range(0, runs_per_experiment, CHUNK):
            rows = Rows()
            for r in range(first, min(first + CHUNK, runs_per_experiment)):
                run_id = rows.run(rng, exp_id, exp_index, r, dataset_uuid)
                run_ids.append(run_id)
                if r % LOGGED_MODEL_EVERY == 0:
                    logged_model_ids.append(rows.logged_model(rng, exp_id, exp_index, run_id, artifacts))
            rows.insert(con)
            con.commit()
    for create in [*secondary, RUN_ORDER_INDEX]:
        con.execute(create)
    con.commit()
    con.close()
    for m in range(models):
        name = f"model-{m:03d}"
        client.create_registered_model(name, tags={"domain": f"d{m % 5}"})
        for v in range(versions):
            # every version registers a LoggedModel (MLflow 3 style), whose run it names
            index = (m * versions + v) % len(logged_model_ids)
            run_id = run_ids[index * LOGGED_MODEL_EVERY]
            client.create_model_version(name, f"models:/{logged_model_ids[index]}", run_id=run_id)
        client.set_registered_model_alias(name, "champion", str(max(1, versions - 1)))
        client.set_registered_model_alias(name, "challenger", str(versions))
    (db.parent / "complete").write_text(f"ok, built in {time.perf_counter() - started:.0f} s\n")
    return db


def _drop_secondary_indexes(con: sqlite3.Connection) -> list[str]:
    """Drop the bulk tables' named indexes (not their keys); return the statements that recreate them."""
    found = con.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
                        f"AND tbl_name IN ({','.join('?' * len(Rows.TABLES))})", tuple(Rows.TABLES)).fetchall()
    for name, _ in found:
        con.execute(f'DROP INDEX "{name}"')
    return [sql for _, sql in found]


CHUNK = 5000  # runs per transaction: the rows of one chunk are all the builder holds
NOW = int(time.time() * 1000)
COLUMNS = ", ".join(f'{{"type": "double", "name": "f{i}", "required": true}}' for i in range(5))
DATASET_SCHEMA = json.dumps({"mlflow_colspec": [{"type": "double", "name": f"f{i}", "required": True}
                                                for i in range(5)]})
READY = 2  # LoggedModelStatus.READY in MLflow's logged_models.status


class Rows:
    """The rows of one chunk of runs, for MLflow's tables (as MLflow's client would write them)."""

    TABLES = {"runs": 14, "params": 3, "metrics": 6, "latest_metrics": 6, "tags": 3, "inputs": 6,
              "input_tags": 3, "logged_models": 11, "logged_model_params": 4, "logged_model_metrics": 10}

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple]] = {table: [] for table in self.TABLES}

    def run(self, rng: random.Random, exp_id: str, exp_index: int, r: int, dataset_uuid: str) -> str:
        run_id, start = uuid.uuid4().hex, NOW - rng.randint(0, 10**9)
        self.rows["runs"].append((run_id, f"run-{exp_index}-{r}", "UNKNOWN", "", "", f"user{r % 7}", "FINISHED",
                                  start, start + rng.randint(1000, 10**6), "", "active",
                                  f"s3://bench/artifacts/{run_id}", int(exp_id), None))
        self.rows["params"] += [(f"param_{p}", str(rng.random()), run_id) for p in range(8)]
        for m in range(6):
            value = rng.random()
            self.rows["metrics"].append((f"metric_{m}", value, start, run_id, 0, 0))
            self.rows["latest_metrics"].append((f"metric_{m}", value, start, 0, 0, run_id))
        self.rows["tags"] += [("mlflow.runName", f"run-{exp_index}-{r}", run_id),
                              ("mlflow.user", f"user{r % 7}", run_id),
                              ("stage", rng.choice(["dev", "prod"]), run_id)]
        if r % 5 == 0:
            input_uuid = uuid.uuid4().hex
            self.rows["inputs"].append((input_uuid, "DATASET", dataset_uuid, "RUN", run_id, 0))
            self.rows["input_tags"].append((input_uuid, "mlflow.data.context", "training"))
        self._start = start
        return run_id

    def logged_model(self, rng: random.Random, exp_id: str, exp_index: int, run_id: str, artifacts: Path) -> str:
        """An MLflow 3 LoggedModel of the run just added: params, a metric on a dataset, an MLmodel."""
        model_id, start, exp = f"m-{uuid.uuid4().hex}", self._start, int(exp_id)
        location = artifacts / "models" / model_id / "artifacts"
        location.mkdir(parents=True, exist_ok=True)
        (location / "MLmodel").write_text(MLMODEL.format(path=location, model_id=model_id, columns=COLUMNS))
        self.rows["logged_models"].append((model_id, exp, "model", str(location), NOW, NOW, READY, "active",
                                           None, run_id, None))
        self.rows["logged_model_params"] += [(model_id, exp, f"param_{p}", str(rng.random())) for p in range(4)]
        for metric, dataset in (("auc", (f"dataset-{exp_index:03d}", f"{exp_index:08x}")), ("loss", (None, None))):
            value = rng.random()
            self.rows["logged_model_metrics"].append((model_id, metric, start, 0, value, exp, run_id, None, *dataset))
            self.rows["metrics"].append((metric, value, start, run_id, 0, 0))
            self.rows["latest_metrics"].append((metric, value, start, 0, 0, run_id))
        return model_id

    def insert(self, con: sqlite3.Connection) -> None:
        for table, width in self.TABLES.items():
            con.executemany(f"INSERT INTO {table} VALUES ({','.join('?' * width)})", self.rows[table])


if __name__ == "__main__":
    import sys

    started = time.time()
    print(build_store(*map(int, sys.argv[1:3])), f"{time.time() - started:.1f}s")
