"""Run one measured job in this (fresh) process and print {seconds, cpu_seconds, requests,
peak_rss_mb, tree} as JSON (cpu_seconds: this process's CPU, all threads; less noisy on a busy machine).

    python benchmarks/_measure.py floor URL RUNS_PAGE_SIZE
    python benchmarks/_measure.py incremental-floor URL RUNS_PAGE_SIZE
    PYTHONPATH=TREE python benchmarks/_measure.py ours URL RUNS_PAGE_SIZE OUT.json [extra JSON [recipe JSON]]
    python benchmarks/_measure.py cli RECIPE        # `mlflow-catalog ingest -c RECIPE`, imports included
    python benchmarks/_measure.py datahub RECIPE    # `datahub ingest -c RECIPE`, imports included

Run as a script (not -m), so that `connector` comes from PYTHONPATH: the checkout being measured.
`tree` names the checkout whose `connector` ran (null for the floor).
"""
import json
import resource
import sys
import time
from pathlib import Path

STARTED, CPU_STARTED = time.perf_counter(), time.process_time()  # the command kinds count their imports

import requests  # noqa: E402  (both commands import it too)

API = "/api/2.0/mlflow"


def peak_rss_mb() -> float:
    """This process's own peak RSS. Not ru_maxrss: Linux carries the parent's RSS at fork into it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor(url: str, runs_page_size: int) -> int:
    """Every entity (experiments, runs, MLflow 3 logged models, registered models, versions)
    paged once with plain requests: no parsing beyond JSON, no mapping."""
    session = requests.Session()
    count = 0

    def pages(method, endpoint, key, body, page_size):
        nonlocal count
        token = None
        while True:
            payload = dict(body, max_results=page_size, **({"page_token": token} if token else {}))
            if method == "GET":
                answer = session.get(f"{url}{API}/{endpoint}", params=payload, timeout=120)
            else:
                answer = session.post(f"{url}{API}/{endpoint}", json=payload, timeout=120)
            answer.raise_for_status()
            count += 1
            data = answer.json()
            yield from data.get(key, [])
            token = data.get("next_page_token")
            if not token:
                return

    experiments = [e["experiment_id"] for e in pages("POST", "experiments/search", "experiments",
                                                     {"view_type": "ALL"}, 50000)]
    for i in range(0, len(experiments), 100):
        for _ in pages("POST", "runs/search", "runs", {"experiment_ids": experiments[i:i + 100]}, runs_page_size):
            pass
    for i in range(0, len(experiments), 100):
        for _ in pages("POST", "logged-models/search", "models", {"experiment_ids": experiments[i:i + 100]}, 50000):
            pass
    for _ in pages("GET", "registered-models/search", "registered_models", {}, 1000):
        pass
    for _ in pages("GET", "model-versions/search", "model_versions", {}, 10000):
        pass
    return count


def incremental_floor(url: str, runs_page_size: int) -> int:
    """What a run that finds no change cannot skip, with plain requests: the experiments (a
    rename), the whole registry (a tag or alias set in MLflow changes no timestamp, a deleted
    model leaves none: only a full listing shows them), runs started since the last run (none
    here), and the deleted runs (removals)."""
    session = requests.Session()
    since = int(time.time() * 1000)

    def post(endpoint: str, body: dict) -> dict:
        answer = session.post(f"{url}{API}/{endpoint}", json=body, timeout=120)
        answer.raise_for_status()
        return answer.json()

    def get(endpoint: str, params: dict) -> dict:
        answer = session.get(f"{url}{API}/{endpoint}", params=params, timeout=120)
        answer.raise_for_status()
        return answer.json()

    experiments = [e["experiment_id"] for e in post("experiments/search", {"view_type": "ALL", "max_results": 50000})
                   .get("experiments", [])]
    get("registered-models/search", {"max_results": 1000})
    get("model-versions/search", {"max_results": 10000})
    for i in range(0, len(experiments), 100):
        batch = experiments[i:i + 100]
        post("runs/search", {"experiment_ids": batch, "filter": f"attributes.start_time >= {since}",
                             "max_results": runs_page_size})
        post("runs/search", {"experiment_ids": batch, "run_view_type": "DELETED_ONLY", "max_results": runs_page_size})
    return 3 + 2 * len(range(0, len(experiments), 100))


def ours(url: str, runs_page_size: int, out: str, extra: dict, recipe_extra: dict) -> int:
    from connector.pipeline import run_ingest
    from connector.config.recipe import parse_recipe

    config = {"tracking_uri": url, "runs_page_size": runs_page_size, **extra}
    recipe = parse_recipe({"source": {"type": "mlflow", "config": config},
                           "sink": {"type": "file", "config": {"filename": out}}, **recipe_extra})
    report = run_ingest(recipe, progress_interval=3600)
    if not report.ok:
        raise SystemExit(f"ingest failed: {report.failures}")
    return report.source_requests


def command(kind: str, recipe: str) -> int:
    """A whole CLI command in this process (its imports included), as a user runs it."""
    if kind == "cli":
        from connector.cli import main
        argv = ["mlflow-catalog", "ingest", "-c", recipe]
    else:
        from datahub.entrypoints import main
        argv = ["datahub", "ingest", "-c", recipe]
    sys.argv = argv
    try:
        main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise SystemExit(f"{' '.join(argv)} exited {exc.code}") from None
    return 0


def report_and_exit(seconds: float, cpu_seconds: float, requests_made: int, tree) -> None:
    print(json.dumps({"seconds": round(seconds, 3), "cpu_seconds": round(cpu_seconds, 3), "requests": requests_made,
                      "peak_rss_mb": round(peak_rss_mb(), 1), "tree": tree}), file=RESULT)
    RESULT.flush()


RESULT = sys.stdout


if __name__ == "__main__":
    if sys.argv[1] in ("cli", "datahub"):
        RESULT = sys.__stdout__
        sys.stdout = sys.stderr  # the commands' own report must not mix with the result line
        command(sys.argv[1], sys.argv[2])
        report_and_exit(time.perf_counter() - STARTED, time.process_time() - CPU_STARTED, 0, None)
        sys.exit(0)
    kind, url, page = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tree = None
    if kind == "ours":
        import connector.pipeline  # (imports are not what we measure)
        tree = str(Path(connector.pipeline.__file__).resolve().parent.parent)
    started, cpu_started = time.perf_counter(), time.process_time()
    if kind == "floor":
        requests_made = floor(url, page)
    elif kind == "incremental-floor":
        requests_made = incremental_floor(url, page)
    else:
        requests_made = ours(url, page, sys.argv[4], json.loads(sys.argv[5]) if len(sys.argv) > 5 else {},
                             json.loads(sys.argv[6]) if len(sys.argv) > 6 else {})
    report_and_exit(time.perf_counter() - started, time.process_time() - cpu_started, requests_made, tree)
