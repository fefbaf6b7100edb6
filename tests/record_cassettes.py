"""Re-record the vcrpy cassettes from a real MLflow server: `make cassettes`."""
import json
import os
import sys
import tempfile
from pathlib import Path

from tests.cassettes import CASSETTE, CASSETTE_DIR, SEEDED_FACTS, recorder
from tests.golden_scenarios import SCENARIOS, record
from tests.mlflow_server import QUIET_ENV, free_port, mlflow_server


def main() -> int:
    os.environ.update(QUIET_ENV)
    from connector.pipeline import run_ingest
    from connector.config.recipe import parse_recipe
    from tests.seeding import seed

    CASSETTE_DIR.mkdir(exist_ok=True)
    CASSETTE.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as tmp, mlflow_server(Path(tmp) / "store", free_port()) as url:
        seeded = seed(url)
        recipe = parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": url, "max_workers": 1}},
                               "sink": {"type": "file", "config": {"filename": f"{tmp}/out.json"}}})
        with recorder("all").use_cassette(str(CASSETTE)):
            report = run_ingest(recipe)
        if not report.ok:
            print(report.failures, file=sys.stderr)
            return 1
    SEEDED_FACTS.write_text(json.dumps(
        {"tracking_uri": url, "runs": seeded.runs, "experiments": seeded.experiments}, indent=2) + "\n")
    print(f"recorded {report.source_requests} requests into {CASSETTE}")
    for scenario in SCENARIOS:
        with tempfile.TemporaryDirectory() as tmp:
            record(scenario, Path(tmp))
        print(f"recorded golden scenario {scenario.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
