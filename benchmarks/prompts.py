"""Prompt Registry benchmark: the crawl's MLflow requests with `include_prompts` on and off over a
store of PROMPTS x VERSIONS prompt versions (default 1,000 x 5), served by a real `mlflow server`.
Prompts are listed in bulk (two paged listings), so the difference stays a few requests whatever
the number of prompts; run it at two sizes to see it does not grow.

    python -m benchmarks.prompts                         # 1,000 prompts x 5 versions
    python -m benchmarks.prompts --prompts 20            # the same difference at 20 prompts

The store is built through MLflow's own API (mlflow.genai.register_prompt on a sqlite store, so
that the prompts are exactly what MLflow makes) and cached in .bench/; building is slow (the time
per prompt version is printed).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.crawl import measure  # noqa: E402
from benchmarks.store import CACHE  # noqa: E402
from testkit.mlflow_server import QUIET_ENV, mlflow_server  # noqa: E402


def build_prompt_store(prompts: int, versions: int) -> Path:
    db = CACHE / f"prompts-p{prompts}-v{versions}" / "mlflow.db"
    if (db.parent / "complete").exists():
        return db
    import logging
    import warnings

    import mlflow

    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    started = time.perf_counter()
    for p in range(prompts):
        for v in range(versions):
            mlflow.genai.register_prompt(f"prompt-{p:05d}", template=f"Answer {{{{question}}}} ({p}.{v})",
                                         commit_message=f"version {v + 1}")
        mlflow.genai.set_prompt_alias(f"prompt-{p:05d}", alias="production", version=versions)
    took = time.perf_counter() - started
    print(f"built {prompts} x {versions} prompt versions through MLflow's API in {took:.1f} s "
          f"({1000 * took / (prompts * versions):.1f} ms per version, alias included)")
    (db.parent / "complete").touch()
    return db


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=5)
    args = parser.parse_args()
    os.environ.update(QUIET_ENV)
    db = build_prompt_store(args.prompts, args.versions)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "server").mkdir()
        (Path(tmp) / "server" / "mlflow.db").symlink_to(db)
        with mlflow_server(Path(tmp) / "server", workers=1) as url:
            results = {}
            for label, extra in (("without prompts", {}), ("with prompts", {"include_prompts": True})):
                out = Path(tmp) / f"{label.replace(' ', '-')}.json"
                results[label] = measure(ROOT, "ours", url, "1000", str(out), json.dumps(extra))
                written = len(json.loads(out.read_text(encoding="utf-8")))
                print(f"{label:16} {results[label]['seconds']:7.2f} s  {results[label]['requests']:4d} MLflow "
                      f"requests  {written:6d} proposals")
    extra = results["with prompts"]["requests"] - results["without prompts"]["requests"]
    print(f"{args.prompts} prompts x {args.versions} versions: {extra} more requests with include_prompts "
          "(one per listing page: 1,000 prompts, 10,000 versions a page; none per prompt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
