"""The same crawl three ways, against the same real `mlflow server` over the benchmark store, in one
run, each a fresh CLI process timed wall-clock (imports included), all writing a file sink:

  ours                 `mlflow-catalog ingest`               (our CLI)
  ours in DataHub      `datahub ingest`, type: mlflow-catalog (our plugin inside DataHub's framework)
  DataHub's source     `datahub ingest`, type: mlflow         (DataHub's own MLflow source)

DataHub's own MLflow source cannot share this venv: acryl-datahub[mlflow] pins mlflow-skinny<2.21
and the connector needs 3.17. So the benchmark creates a separate venv for it on first use,
.bench/datahub-venv, with `pip install acryl-datahub[mlflow]==1.7.0.17` from the package registry
pip is configured with (no other network; a few minutes, once). `--skip-datahub-source` leaves it out.

    python -m benchmarks.datahub_ingest            # default store: 20 x 250 runs, 100 x 10 versions
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.store import CACHE, build_store  # noqa: E402
from testkit.mlflow_server import QUIET_ENV, mlflow_server  # noqa: E402

BIN = Path(sys.executable).parent
DATAHUB_VENV = CACHE / "datahub-venv"
DATAHUB_MLFLOW_REQUIREMENT = "acryl-datahub[mlflow]==1.7.0.17"


def datahub_source_venv() -> Path:
    """The separate venv holding DataHub's own MLflow source; created from the package registry once."""
    datahub = DATAHUB_VENV / "bin" / "datahub"
    if not datahub.exists():
        print(f"creating {DATAHUB_VENV} with {DATAHUB_MLFLOW_REQUIREMENT} (DataHub's MLflow source pins "
              "mlflow-skinny<2.21; it cannot share our venv) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DATAHUB_VENV)], check=True)
        subprocess.run([str(DATAHUB_VENV / "bin" / "pip"), "install", "-q", DATAHUB_MLFLOW_REQUIREMENT], check=True)
    return datahub


def timed(command: list, home: Path) -> float:
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **QUIET_ENV, "HOME": str(home)})
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return seconds


def recipe(path: Path, source: dict, out: Path) -> Path:
    path.write_text(json.dumps({"pipeline_name": "bench", "source": source,
                                "sink": {"type": "file", "config": {"filename": str(out)}}}))
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--runs-per-experiment", type=int, default=250)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=2, help="best of N for ours and ours in DataHub")
    parser.add_argument("--skip-datahub-source", action="store_true")
    args = parser.parse_args()
    os.environ.update(QUIET_ENV)

    db = build_store(args.experiments, args.runs_per_experiment, args.models, args.versions)
    datahub_own = None if args.skip_datahub_source else datahub_source_venv()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "home").mkdir()
        server_root = tmp / "server"
        server_root.mkdir()
        (server_root / "mlflow.db").symlink_to(db)
        with mlflow_server(server_root, workers=1) as url:
            ours_config = {"tracking_uri": url}
            commands = {
                "ours": [BIN / "mlflow-catalog", "ingest", "-c",
                         recipe(tmp / "ours.yml", {"type": "mlflow", "config": ours_config}, tmp / "ours.json")],
                "ours in DataHub": [BIN / "datahub", "ingest", "-c",
                                    recipe(tmp / "plugin.yml", {"type": "mlflow-catalog", "config": ours_config},
                                           tmp / "plugin.json")],
            }
            timed(commands["ours"], tmp / "home")  # warm the server's caches once
            results = {kind: min(timed(command, tmp / "home") for _ in range(args.repeat))
                       for kind, command in commands.items()}
            if datahub_own is not None:
                own = [datahub_own, "ingest", "-c",
                       recipe(tmp / "datahub.yml", {"type": "mlflow", "config": {"tracking_uri": url}},
                              tmp / "datahub.json")]
                results["DataHub's source"] = timed(own, tmp / "home")
        counts = {kind: len(json.loads((tmp / f"{name}.json").read_text()))
                  for kind, name in (("ours", "ours"), ("ours in DataHub", "plugin"), ("DataHub's source", "datahub"))
                  if (tmp / f"{name}.json").exists()}
    print(f"store: {args.experiments} experiments x {args.runs_per_experiment} runs, "
          f"{args.models} models x {args.versions} versions; wall-clock of each CLI, imports included")
    for kind, seconds in results.items():
        print(f"{kind:>18}: {seconds:7.2f} s  {counts[kind]:7d} proposals")
    if "DataHub's source" in results:
        theirs = results["DataHub's source"]
        print(f"DataHub's source / ours in DataHub: {theirs / results['ours in DataHub']:.1f}x   "
              f"DataHub's source / ours: {theirs / results['ours']:.1f}x")
    print(f"ours in DataHub / ours: {results['ours in DataHub'] / results['ours']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
