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
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{db}")  # the registry resolves models:/ sources through it
    client = MlflowClient(f"sqlite:///{db}")
    rng = random.Random(seed)
    exp_ids = [client.create_experiment(f"experiment-{e:03d}", tags={"team": f"team-{e % 4}"},
                                        artifact_location=str(db.parent / "artifacts" / f"e{e}"))
               for e in range(experiments)]
    now = int(time.time() * 1000)
    schema = json.dumps({"mlflow_colspec": [{"type": "double", "name": f"f{i}", "required": True}
                                            for i in range(5)]})
    con = sqlite3.connect(db)
    run_ids: list[str] = []
    logged_model_ids: list[str] = []
    logged_runs: list[tuple] = []
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
            if r % LOGGED_MODEL_EVERY == 0:
                logged_runs.append((exp_id, exp_index, run_id, start))
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
    logged_model_ids = _logged_models(client, logged_runs, rng)
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
    (db.parent / "complete").write_text("ok\n")
    return db


def _logged_models(client, logged_runs, rng) -> list[str]:
    """MLflow 3 LoggedModels through MLflow's client: params, a metric on a dataset, an MLmodel."""
    from mlflow.entities import LoggedModelStatus, Metric

    columns = ", ".join(f'{{"type": "double", "name": "f{i}", "required": true}}' for i in range(5))
    ids = []
    for exp_id, exp_index, run_id, start in logged_runs:
        model = client.create_logged_model(exp_id, name="model", source_run_id=run_id,
                                           params={f"param_{p}": str(rng.random()) for p in range(4)})
        location = Path(model.artifact_location)
        location.mkdir(parents=True, exist_ok=True)
        (location / "MLmodel").write_text(MLMODEL.format(path=location, model_id=model.model_id, columns=columns))
        client.log_batch(run_id, metrics=[
            Metric("auc", rng.random(), start, 0, model_id=model.model_id,
                   dataset_name=f"dataset-{exp_index:03d}", dataset_digest=f"{exp_index:08x}"),
            Metric("loss", rng.random(), start, 0, model_id=model.model_id)])
        client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        ids.append(model.model_id)
    return ids


if __name__ == "__main__":
    started = time.time()
    print(build_store(), f"{time.time() - started:.1f}s")
