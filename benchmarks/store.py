"""Build (and cache) a generated MLflow sqlite store of a given size for the benchmarks.

MLflow creates the schema and one template experiment; the bulk of runs, params, metrics,
tags and datasets goes in with plain SQL (creating 50,000 runs through the client would take
longer than the benchmark itself). The registry goes through MLflow's client so that its
own bookkeeping (latest versions, aliases) is MLflow's.
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
    return CACHE / f"store-e{experiments}-r{runs_per_experiment}-m{models}-v{versions}" / "mlflow.db"


def build_store(experiments: int = 20, runs_per_experiment: int = 250, models: int = 100,
                versions: int = 10, seed: int = 1) -> Path:
    db = store_path(experiments, runs_per_experiment, models, versions)
    if (db.parent / "complete").exists():
        return db
    import logging
    import warnings

    from mlflow import MlflowClient

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    client = MlflowClient(f"sqlite:///{db}")
    rng = random.Random(seed)
    exp_ids = [client.create_experiment(f"experiment-{e:03d}", tags={"team": f"team-{e % 4}"})
               for e in range(experiments)]
    now = int(time.time() * 1000)
    schema = json.dumps({"mlflow_colspec": [{"type": "double", "name": f"f{i}", "required": True}
                                            for i in range(5)]})
    con = sqlite3.connect(db)
    run_ids: list[str] = []
    for exp_index, exp_id in enumerate(exp_ids):
        dataset_uuid = uuid.uuid4().hex
        con.execute("INSERT INTO datasets VALUES (?,?,?,?,?,?,?,?)", (
            dataset_uuid, int(exp_id), f"dataset-{exp_index:03d}", f"{exp_index:08x}", "s3",
            json.dumps({"uri": f"s3://bench/data/{exp_index}.parquet"}), schema,
            json.dumps({"num_rows": 1000})))
        runs, params, metrics, latest, tags, inputs, input_tags = [], [], [], [], [], [], []
        for r in range(runs_per_experiment):
            run_id = uuid.uuid4().hex
            run_ids.append(run_id)
            start = now - rng.randint(0, 10**9)
            runs.append((run_id, f"run-{exp_index}-{r}", "UNKNOWN", "", "", f"user{r % 7}", "FINISHED",
                         start, start + rng.randint(1000, 10**6), "", "active",
                         f"s3://bench/artifacts/{run_id}", int(exp_id), None))
            params += [(f"param_{p}", str(rng.random()), run_id) for p in range(8)]
            for m in range(6):
                value = rng.random()
                metrics.append((f"metric_{m}", value, start, run_id, 0, 0))
                latest.append((f"metric_{m}", value, start, 0, 0, run_id))
            tags += [("mlflow.runName", f"run-{exp_index}-{r}", run_id), ("mlflow.user", f"user{r % 7}", run_id),
                     ("stage", rng.choice(["dev", "prod"]), run_id)]
            if r % 5 == 0:
                input_uuid = uuid.uuid4().hex
                inputs.append((input_uuid, "DATASET", dataset_uuid, "RUN", run_id, 0))
                input_tags.append((input_uuid, "mlflow.data.context", "training"))
        con.executemany("INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", runs)
        con.executemany("INSERT INTO params VALUES (?,?,?)", params)
        con.executemany("INSERT INTO metrics VALUES (?,?,?,?,?,?)", metrics)
        con.executemany("INSERT INTO latest_metrics VALUES (?,?,?,?,?,?)", latest)
        con.executemany("INSERT INTO tags VALUES (?,?,?)", tags)
        con.executemany("INSERT INTO inputs VALUES (?,?,?,?,?,?)", inputs)
        con.executemany("INSERT INTO input_tags VALUES (?,?,?)", input_tags)
        con.commit()
    con.close()
    for m in range(models):
        name = f"model-{m:03d}"
        client.create_registered_model(name, tags={"domain": f"d{m % 5}"})
        for v in range(versions):
            run_id = run_ids[(m * versions + v) * 3 % len(run_ids)]
            client.create_model_version(name, f"s3://bench/artifacts/{run_id}/model", run_id=run_id)
        client.set_registered_model_alias(name, "champion", str(max(1, versions - 1)))
        client.set_registered_model_alias(name, "challenger", str(versions))
    (db.parent / "complete").write_text("ok\n")
    return db


if __name__ == "__main__":
    started = time.time()
    print(build_store(), f"{time.time() - started:.1f}s")
