"""Crawl benchmark: our full ingest (to a file sink) against the floor (every entity paged once
with plain requests), both against the same real `mlflow server` (one worker), measured in the
same run, each in a fresh process.

    python -m benchmarks.crawl                          # default size: 20 x 250 runs, 100 x 10 versions
    python -m benchmarks.crawl --runs-per-experiment 2500 --skip-floor   # 50k runs, memory
    python -m benchmarks.crawl --incremental             # + a no-change incremental run against a full one
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.store import build_store  # noqa: E402
from tests.mlflow_server import QUIET_ENV, mlflow_server  # noqa: E402


def measure(*args: str) -> dict:
    if os.environ.get("BENCH_DEBUG"):
        print("measure", args, file=sys.stderr)
    proc = subprocess.run([sys.executable, "-m", "benchmarks._measure", *args], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, **QUIET_ENV})
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--runs-per-experiment", type=int, default=250)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--runs-page-size", type=int, default=1000, help="ours (the recipe default)")
    parser.add_argument("--floor-runs-page-size", type=int, default=50000, help="the server maximum")
    parser.add_argument("--repeat", type=int, default=3, help="best of N for each side")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--extra", default="{}", help="extra source config for ours, as JSON")
    parser.add_argument("--incremental", action="store_true",
                        help="also time a full run with state, then an incremental run that finds no change")
    args = parser.parse_args()
    os.environ.update(QUIET_ENV)

    db = build_store(args.experiments, args.runs_per_experiment, args.models, args.versions)
    size = (f"{args.experiments} experiments x {args.runs_per_experiment} runs, "
            f"{args.models} models x {args.versions} versions; runs page: ours {args.runs_page_size}, "
            f"floor {args.floor_runs_page_size}")
    with tempfile.TemporaryDirectory() as tmp:
        server_root = Path(tmp) / "server"
        server_root.mkdir()
        (server_root / "mlflow.db").symlink_to(db)
        with mlflow_server(server_root, workers=1) as url:
            measure("floor", url, str(args.floor_runs_page_size))  # warm the server's caches once
            results = {}
            for kind in (["ours"] if args.skip_floor else ["floor", "ours"]):
                runs = [measure(kind, url, str(args.runs_page_size), f"{tmp}/out.json", args.extra)
                        if kind == "ours" else measure(kind, url, str(args.floor_runs_page_size))
                        for _ in range(args.repeat)]
                results[kind] = min(runs, key=lambda r: r["seconds"])
                results[kind]["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
            proposals = len(json.loads(Path(f"{tmp}/out.json").read_text()))
            if args.incremental:
                state = json.dumps({"pipeline_name": "bench", "state": {"path": f"{tmp}/state.json"}})
                incremental = json.dumps({**json.loads(args.extra), "incremental": True})
                full = measure("ours", url, str(args.runs_page_size), f"{tmp}/full.json", args.extra, state)
                increments = [measure("ours", url, str(args.runs_page_size), f"{tmp}/incr.json", incremental, state)
                              for _ in range(args.repeat)]
                results["full with state"] = full
                results["incremental, no change"] = min(increments, key=lambda r: r["seconds"])
                changed = len(json.loads(Path(f"{tmp}/incr.json").read_text()))
    print(f"store: {size}")
    for kind, r in results.items():
        print(f"{kind:>22}: {r['seconds']:7.2f} s  {r['requests']:5d} requests  peak RSS {r['peak_rss_mb']:7.1f} MB")
    print(f"  ours: {proposals} proposals written")
    if "floor" in results:
        f, o = results["floor"], results["ours"]
        print(f"ratio ours/floor: time {o['seconds'] / f['seconds']:.2f}  requests {o['requests'] / f['requests']:.2f}")
    if args.incremental:
        full, incr = results["full with state"], results["incremental, no change"]
        print(f"incremental (no change) / full: {incr['seconds'] / full['seconds']:.3f}  "
              f"({changed} proposals re-sent)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
