"""Lineage page benchmark: the page of the benchmark store's output, its size, the time to write it,
and its time to first render in real headless Chromium, beside the same figures for an empty
graph (the page's floor: the browser's start and the inlined library) measured in the same run.

    python -m benchmarks.lineage                              # 20 x 2,500 runs (50k), 100 x 10 versions
    python -m benchmarks.lineage --runs-per-experiment 250    # the default crawl benchmark's store (5k runs)

Time to first render is the page's own clock (performance.now() from navigation start) when the
graph is drawn and the page is ready, read from the DOM; the median of --repeat browser starts."""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.store import build_store  # noqa: E402
from testkit.mlflow_server import QUIET_ENV  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,900", "--virtual-time-budget=60000"]


def ingest(db: Path, out: Path) -> None:
    import os

    os.environ.update(QUIET_ENV)
    from connector.pipeline import run_ingest
    from connector.config.recipe import parse_recipe

    recipe = parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": f"sqlite:///{db}"}},
                           "sink": {"type": "file", "config": {"filename": str(out)}}})
    report = run_ingest(recipe, progress_interval=3600)
    if not report.ok:
        raise SystemExit(f"ingest failed: {report.failures}")


def write_page(records: list, page: Path) -> float:
    from connector.lineage.command import write_page as write

    started = time.perf_counter()
    write(records, str(page), "benchmark")
    return time.perf_counter() - started


def first_render_ms(page: Path, profile: Path) -> int:
    proc = subprocess.run(["chromium", *FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=600)
    body = re.search(r"<body[^>]*>", proc.stdout)
    found = re.search(r'data-rendered-ms="(\d+)"', body.group(0)) if body else None
    if not found or 'data-ready="1"' not in body.group(0):
        summary = re.search(r'<span id="summary">([^<]*)</span>', proc.stdout)
        raise SystemExit(f"the page did not render: {body.group(0) if body else 'no body'} "
                         f"{summary.group(1) if summary else ''}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--runs-per-experiment", type=int, default=2500)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    started = time.perf_counter()
    db = build_store(args.experiments, args.runs_per_experiment, args.models, args.versions)
    print(f"store {db} ready in {time.perf_counter() - started:.0f} s")
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        out = db.parent / "lineage-output.json"  # the crawl is not what this measures: kept for the next run
        if not out.exists():
            ingest(db, tmp_path / "out.json")
            (tmp_path / "out.json").replace(out)
        records = json.loads(out.read_text())
        pages = {"empty graph": ([], tmp_path / "empty.html"), "benchmark store": (records, tmp_path / "store.html")}
        written = {name: write_page(recs, page) for name, (recs, page) in pages.items()}
        renders: dict[str, list[int]] = {name: [] for name in pages}
        for round_ in range(args.repeat):  # interleaved: a slow spell of the machine hits both
            for name, (_, page) in pages.items():
                renders[name].append(first_render_ms(page, tmp_path / f"profile-{round_}-{len(renders[name])}"))
        runs = sum(1 for r in records if r["aspectName"] == "dataProcessInstanceProperties")
        print(f"{len(records):,} proposals, {runs:,} runs")
        print(f"{'page':<16} {'size':>9} {'written in':>11} {'first render (median)':>22} {'rounds':>20}")
        for name, (_, page) in pages.items():
            size = page.stat().st_size / 1e6
            print(f"{name:<16} {size:>7.2f}MB {written[name]:>10.2f}s {statistics.median(renders[name]):>19} ms "
                  f"{str(renders[name]):>20}")
        ratio = statistics.median(renders["benchmark store"]) / statistics.median(renders["empty graph"])
        print(f"first render: {ratio:.2f}x the empty graph's")


if __name__ == "__main__":
    main()
