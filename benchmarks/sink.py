"""REST sink throughput: proposals per second to the test catalog server on loopback,
batched (several batches in flight) against one proposal per request.

    python -m benchmarks.sink [--proposals 20000]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from connector.mapping.common import MappingContext  # noqa: E402
from connector.mapping.experiments import map_run  # noqa: E402
from connector.sinks.gms_client import GmsSettings  # noqa: E402
from connector.sinks.rest import RestSink  # noqa: E402
from connector.source.mlflow_objects import Experiment, Run  # noqa: E402
from testkit.catalog_server import CatalogServer  # noqa: E402


def proposals(count: int):
    ctx, experiment = MappingContext(), Experiment(experiment_id="1", name="bench")
    produced: list = []
    i = 0
    while len(produced) < count:
        run = Run(run_id=f"run{i:08d}", experiment_id="1", run_name=f"r{i}", user_id="bench",
                  status="FINISHED", start_time=1_000 + i, end_time=2_000 + i,
                  params={f"p{k}": str(k) for k in range(8)}, metrics={f"m{k}": k / 3 for k in range(6)})
        produced.extend(map_run(ctx, run, experiment, []))
        i += 1
    return produced[:count]


def measure(items, server_url: str, tmp: str, **sink_options) -> float:
    sink = RestSink(GmsSettings(server=server_url), dead_letter_file=f"{tmp}/dead.json", **sink_options)
    system_metadata = {"lastObserved": 0, "runId": "bench"}
    started = time.perf_counter()
    for proposal in items:
        sink.write(proposal, system_metadata)
    result = sink.commit()
    seconds = time.perf_counter() - started
    assert result.delivered == len(items) and not result.failed
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proposals", type=int, default=20000)
    parser.add_argument("--single", type=int, default=2000, help="proposals for the one-by-one run")
    args = parser.parse_args()
    items = proposals(args.proposals)
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for label, count, options in (
            ("batched (200/request, 4 in flight)", args.proposals, {"max_batch_size": 200, "max_in_flight": 4}),
            ("batched (200/request, 1 in flight)", args.proposals, {"max_batch_size": 200, "max_in_flight": 1}),
            ("single (1/request)", args.single, {"max_batch_size": 1, "max_in_flight": 1}),
        ):
            with CatalogServer() as catalog:
                seconds = measure(items[:count], catalog.url, tmp, **options)
                assert len(catalog.received) == count and not catalog.problems
            results[label] = count / seconds
            print(f"{label:<38} {count:>6} proposals  {seconds:6.2f} s  {count / seconds:9.0f} proposals/s")
    base = results["single (1/request)"]
    print(f"batched / single: {results['batched (200/request, 4 in flight)'] / base:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
