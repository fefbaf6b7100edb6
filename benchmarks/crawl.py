"""Crawl benchmark: our full ingest (to a file sink) against the floor (every entity paged once
with plain requests), and optionally against an older checkout of the connector, all against the
same real `mlflow server` (one worker) over the same store, measured in the same run, each job in a
fresh process. Repeats are interleaved (floor, ours, baseline, floor, ...) so that a slow spell of
a shared machine hits every side alike; a side's time is the median of its rounds, with the range
(fastest-slowest) beside it, its CPU seconds (the job's own process, median) are the steadier
measure of our work on a busy machine, its peak RSS is the highest of its runs.

One run reports: the crawl against the floor; whole commands, imports included: our CLI, our
plugin in `datahub ingest` (DataHub's file sink, and its blackhole sink that keeps nothing, the
difference being the file sink's own cost) and DataHub's floors (`datahub ingest` of an empty
file source, and of the same proposals from a file, to its file sink); an incremental run that
finds no change against a full run with state; with --memory-scale, peak RSS of a full crawl at
several store sizes.

    python -m benchmarks.crawl                          # default size: 20 x 250 runs, 100 x 10 versions
    python -m benchmarks.crawl --baseline-tree ../before             # + the connector of another checkout
    python -m benchmarks.crawl --runs-per-experiment 2500 --skip-floor   # 50k runs, memory
    python -m benchmarks.crawl --memory-scale 5000,50000,1000000     # peak RSS by store size (builds stores)

The baseline checkout needs no venv of its own: its `connector` is imported from it (PYTHONPATH)
with this venv's packages; each job reports which checkout it imported, and a mismatch stops the run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Callable, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.store import build_store  # noqa: E402
from testkit.mlflow_server import QUIET_ENV, mlflow_server  # noqa: E402

MEASURE = ROOT / "benchmarks" / "_measure.py"


def measure(tree: Optional[Path], *args: str, home: Optional[Path] = None) -> dict:
    """One job in a fresh process; `tree` is the checkout whose `connector` runs (None: the floor)."""
    if os.environ.get("BENCH_DEBUG"):
        print("measure", tree, args, file=sys.stderr)
    env = {**os.environ, **QUIET_ENV, **({"HOME": str(home)} if home else {})}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tree), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run([sys.executable, str(MEASURE), *args], capture_output=True, text=True,
                          cwd=tree or ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if tree is not None and Path(result["tree"]) != tree.resolve():
        raise SystemExit(f"expected the connector of {tree}, the job imported the one in {result['tree']}")
    return result


def summarise(runs: list[dict]) -> dict:
    times = [r["seconds"] for r in runs]
    return {"median": statistics.median(times), "fastest": min(times), "slowest": max(times),
            "rounds": len(runs), "requests": runs[0]["requests"],
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def interleaved(jobs: dict[str, Callable[[], dict]], repeat: int) -> dict[str, dict]:
    runs: dict[str, list] = {label: [] for label in jobs}
    for _ in range(repeat):
        for label, job in jobs.items():
            runs[label].append(job())
    return {label: summarise(done) for label, done in runs.items()}


def tree_label(tree: Path) -> str:
    head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return f"baseline {head.stdout.strip() or tree.name}"


def proposals_without_system_metadata(path: Path) -> list[str]:
    return sorted(json.dumps({k: v for k, v in p.items() if k != "systemMetadata"}, sort_keys=True)
                  for p in json.loads(path.read_text()))


def output_difference(ours: list[str], theirs: list[str]) -> str:
    if ours == theirs:
        return f"identical ({len(ours)} proposals)"
    only_ours, only_theirs = Counter(ours) - Counter(theirs), Counter(theirs) - Counter(ours)

    def aspects(only: Counter) -> str:
        kinds = Counter(json.loads(p)["aspectName"] for p in only.elements())
        return ", ".join(f"{name} {n}" for name, n in kinds.most_common(4))
    return (f"DIFFERENT: {sum(only_ours.values())} only in ours ({aspects(only_ours)}), "
            f"{sum(only_theirs.values())} only in the other ({aspects(only_theirs)})")


def print_table(results: dict[str, dict]) -> None:
    print(f"{'run':>40}  {'median s':>8}  {'range s':>13}  {'rounds':>6}  {'CPU s':>6}  {'requests':>8}  "
          f"{'peak RSS MB':>11}")
    for label, r in results.items():
        print(f"{label:>40}  {r['median']:8.2f}  {r['fastest']:6.2f}-{r['slowest']:<6.2f}  {r['rounds']:6d}  "
              f"{r['cpu_seconds']:6.2f}  {r['requests']:8d}  {r['peak_rss_mb']:11.1f}")


def print_ratio(numerator: str, denominator: str, results: dict[str, dict]) -> None:
    n, d = results[numerator], results[denominator]
    requests = f"requests {n['requests'] / d['requests']:.2f}  " if d["requests"] else ""
    print(f"{numerator} / {denominator}: median time {n['median'] / d['median']:.3f} "
          f"(fastest {n['fastest'] / d['fastest']:.3f}, CPU {n['cpu_seconds'] / d['cpu_seconds']:.3f})  "
          f"{requests}peak RSS {n['peak_rss_mb'] / d['peak_rss_mb']:.3f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiments", type=int, default=20)
    parser.add_argument("--runs-per-experiment", type=int, default=250)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--runs-page-size", type=int, default=1000, help="ours (the recipe default)")
    parser.add_argument("--floor-runs-page-size", type=int, default=50000, help="the server maximum")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of each side (interleaved); median of N")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument("--baseline-tree", type=Path, action="append", default=[],
                        help="another checkout whose connector to measure beside ours (repeatable)")
    parser.add_argument("--extra", default="{}", help="extra source config for ours, as JSON")
    parser.add_argument("--incremental", action="store_true", help=argparse.SUPPRESS)  # the default now
    parser.add_argument("--skip-incremental", action="store_true",
                        help="leave out the full run with state and the incremental runs that find no change")
    parser.add_argument("--skip-crawl", action="store_true", help="leave out the crawl against the floor")
    parser.add_argument("--skip-commands", action="store_true",
                        help="leave out the whole commands (our CLI, our plugin in datahub ingest, DataHub's floor)")
    parser.add_argument("--memory-scale", default="",
                        help="comma-separated run counts (e.g. 5000,50000,1000000): peak RSS of one full crawl "
                             "of each store (built once, in --experiments experiments), nothing else")
    args = parser.parse_args()
    for tree in args.baseline_tree:
        if not (tree / "connector" / "pipeline.py").is_file():
            parser.error(f"--baseline-tree {tree}: no connector/pipeline.py there")
    return args


def main() -> int:
    args = parse_args()
    os.environ.update(QUIET_ENV)
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    if args.memory_scale:
        return memory_scale(args, [int(n) for n in args.memory_scale.split(",")])
    trees = {"ours": ROOT, **{tree_label(tree): tree for tree in args.baseline_tree}}
    db = build_store(args.experiments, args.runs_per_experiment, args.models, args.versions)
    print(f"store: {args.experiments} experiments x {args.runs_per_experiment} runs, {args.models} models x "
          f"{args.versions} versions; runs page: ours {args.runs_page_size}, floor {args.floor_runs_page_size}")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "server").mkdir()
        (Path(tmp) / "server" / "mlflow.db").symlink_to(db)
        with mlflow_server(Path(tmp) / "server", workers=1) as url:
            measure(None, "floor", url, str(args.floor_runs_page_size))  # warm the server's caches once
            if not args.skip_crawl:
                full_runs(args, url, trees, Path(tmp))
            if not args.skip_commands:
                command_runs(args, url, Path(tmp))
            if not args.skip_incremental:
                incremental_runs(args, url, trees, Path(tmp))
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    return 0


def full_runs(args: argparse.Namespace, url: str, trees: dict[str, Path], tmp: Path) -> None:
    page = str(args.runs_page_size)
    jobs: dict[str, Callable[[], dict]] = {}
    if not args.skip_floor:
        jobs["floor"] = partial(measure, None, "floor", url, str(args.floor_runs_page_size))
    for label, tree in trees.items():
        jobs[label] = partial(measure, tree, "ours", url, page, str(tmp / f"{label}.json"), args.extra)
    results = interleaved(jobs, args.repeat)
    print_table(results)
    for label in trees:
        if "floor" in results:
            print_ratio(label, "floor", results)
    outputs = {label: proposals_without_system_metadata(tmp / f"{label}.json") for label in trees}
    print(f"ours: {len(outputs['ours'])} proposals written")
    for label in list(trees)[1:]:
        print_ratio("ours", label, results)
        difference = output_difference(outputs["ours"], outputs[label])
        print(f"output of ours and {label} apart from systemMetadata: {difference}")


def incremental_runs(args: argparse.Namespace, url: str, trees: dict[str, Path], tmp: Path) -> None:
    """Per checkout: one full run with state, then no-change incremental runs against it."""
    page, incremental = str(args.runs_page_size), json.dumps({**json.loads(args.extra), "incremental": True})

    def state(label: str) -> str:
        return json.dumps({"pipeline_name": "bench", "state": {"path": str(tmp / f"{label}-state.json")}})

    full = {f"{label}, full with state": measure(tree, "ours", url, page, str(tmp / f"{label}-full.json"),
                                                 args.extra, state(label)) for label, tree in trees.items()}
    jobs: dict[str, Callable[[], dict]] = {
        "incremental floor (listings no run can skip)": partial(measure, None, "incremental-floor", url, page)}
    jobs.update({
        f"{label}, incremental no change": partial(measure, tree, "ours", url, page, str(tmp / f"{label}-incr.json"),
                                                   incremental, state(label))
        for label, tree in trees.items()})
    results = {**{label: summarise([r]) for label, r in full.items()}, **interleaved(jobs, args.repeat)}
    print()
    print_table(results)
    floor = results["incremental floor (listings no run can skip)"]
    for label in trees:
        resent = len(json.loads((tmp / f"{label}-incr.json").read_text()))
        incremental, whole = results[f"{label}, incremental no change"], results[f"{label}, full with state"]
        print(f"{label}: incremental no change takes {incremental['median'] / whole['median']:.1%} of a full "
              f"crawl's time (median; fastest {incremental['fastest'] / whole['median']:.1%}); "
              f"{resent} proposals re-sent; {incremental['median'] / floor['median']:.2f}x the incremental floor, "
              f"which alone is {floor['median'] / whole['median']:.1%} of the full crawl")
    for label in list(trees)[1:]:
        print_ratio("ours, incremental no change", f"{label}, incremental no change", results)


def write_recipe(path: Path, source: dict, out: Optional[Path]) -> str:
    """A recipe writing to a file sink, or (out None) to DataHub's `blackhole` sink, which keeps nothing."""
    sink = {"type": "file", "config": {"filename": str(out)}} if out else {"type": "blackhole", "config": {}}
    path.write_text(json.dumps({"pipeline_name": "bench", "source": source, "sink": sink}))
    return str(path)


def command_runs(args: argparse.Namespace, url: str, tmp: Path) -> None:
    """Whole commands, imports included: our CLI, our plugin in `datahub ingest` with DataHub's file
    sink and with its blackhole sink (keeps nothing: the difference is the file sink's own cost,
    which holds every record until it closes, then writes them with the pure-Python encoder), and
    DataHub's floors: `datahub ingest` of an empty file source (the framework), and of a file holding
    the same proposals (the framework and its per-work-unit cost)."""
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "empty.json").write_text("[]\n")
    config = {"tracking_uri": url, "runs_page_size": args.runs_page_size, **json.loads(args.extra)}
    empty = {"type": "file", "config": {"path": str(tmp / "empty.json")}}
    plugin = {"type": "mlflow-catalog", "config": config}
    recipes = {
        "ours (CLI)": ("cli", write_recipe(tmp / "cli.json", {"type": "mlflow", "config": config},
                                           tmp / "cli-out.json")),
        "ours in datahub ingest": ("datahub", write_recipe(tmp / "plugin.json", plugin, tmp / "plugin-out.json")),
        "ours in datahub ingest, blackhole sink": ("datahub", write_recipe(tmp / "plugin-bh.json", plugin, None)),
        "datahub ingest, empty source": ("datahub", write_recipe(tmp / "empty-recipe.json", empty,
                                                                 tmp / "empty-out.json")),
        # DataHub's own per-work-unit cost: the CLI's proposals (its first round wrote them) read back
        # by DataHub's file source into DataHub's file sink
        "datahub ingest, same proposals from a file": ("datahub", write_recipe(
            tmp / "replay-recipe.json", {"type": "file", "config": {"path": str(tmp / "cli-out.json")}},
            tmp / "replay-out.json")),
    }
    jobs = {label: partial(measure, None, kind, recipe, home=tmp / "home") for label, (kind, recipe) in recipes.items()}
    results = interleaved(jobs, args.repeat)
    print()
    print_table(results)
    print_ratio("ours in datahub ingest", "ours (CLI)", results)
    print_ratio("ours in datahub ingest, blackhole sink", "ours (CLI)", results)
    difference = output_difference(proposals_without_system_metadata(tmp / "plugin-out.json"),
                                   proposals_without_system_metadata(tmp / "cli-out.json"))
    print(f"output of the plugin and the CLI apart from systemMetadata: {difference}")
    print(plugin_verdict(results))


def plugin_verdict(results: dict[str, dict]) -> str:
    """The acceptance line: through `datahub ingest` with DataHub's file sink, <= 1.5x our CLI's
    time and < 150 MB peak RSS; the blackhole run says how much of it is the file sink's own."""
    plugin, cli = results["ours in datahub ingest"], results["ours (CLI)"]
    blackhole = results["ours in datahub ingest, blackhole sink"]
    ratio, rss = plugin["median"] / cli["median"], plugin["peak_rss_mb"]
    return (f"plugin with DataHub's file sink: {ratio:.2f}x our CLI's time ({'met' if ratio <= 1.5 else 'NOT met'}: "
            f"<= 1.5x), peak RSS {rss:.0f} MB ({'met' if rss < 150 else 'NOT met'}: < 150 MB); "
            f"DataHub's file sink's own share: +{plugin['cpu_seconds'] - blackhole['cpu_seconds']:.1f} CPU s, "
            f"+{rss - blackhole['peak_rss_mb']:.0f} MB over the blackhole sink")


def memory_scale(args: argparse.Namespace, sizes: list[int]) -> int:
    """Peak RSS of one full crawl (ours, a file sink) per store size; each store built once and cached."""
    rows = []
    for runs in sizes:
        per_experiment = max(1, runs // args.experiments)
        started = time.perf_counter()
        db = build_store(args.experiments, per_experiment, args.models, args.versions)
        print(f"store of {args.experiments} x {per_experiment} runs: {db} "
              f"({(db.parent / 'complete').read_text().strip()}; ready in {time.perf_counter() - started:.0f} s)",
              flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "server").mkdir()
            (Path(tmp) / "server" / "mlflow.db").symlink_to(db)
            with mlflow_server(Path(tmp) / "server", workers=1) as url:
                result = measure(ROOT, "ours", url, str(args.runs_page_size), str(Path(tmp) / "out.json"), args.extra)
                written = (Path(tmp) / "out.json").stat().st_size
        rows.append((args.experiments * per_experiment, result, written))
        print(f"{rows[-1][0]:>9} runs: {result['seconds']:8.1f} s  peak RSS {result['peak_rss_mb']:6.1f} MB  "
              f"({result['peak_rss_mb'] / rows[0][1]['peak_rss_mb']:.2f}x the {rows[0][0]}-run store)  "
              f"{written / 1e6:.0f} MB written", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
