"""Golden scenarios: a real MLflow server seeded, crawled step by step with its HTTP traffic
recorded (vcrpy) and its output kept as a golden file. Replaying a scenario must give the same
proposals (systemMetadata aside): the proof that a change of the core kept behaviour.

`make cassettes` re-records every scenario (cassettes and goldens) from a fresh server; do that
only when a change of output is intended, and say in the commit which output changed and why."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from tests.cassettes import CASSETTE_DIR, recorder

GOLDEN_DIR = Path(__file__).parent / "golden"


@dataclass(frozen=True)
class Step:
    source: dict = field(default_factory=dict)            # source.config keys besides tracking_uri
    mutate: Optional[Callable[[str, dict], None]] = None  # changes to MLflow before this step
    stateful: bool = False


@dataclass(frozen=True)
class Scenario:
    name: str
    seed: Callable[[str], dict]
    steps: tuple
    proxy_artifacts: bool = False

    def cassette(self, index: int) -> Path:
        return CASSETTE_DIR / f"golden-{self.name}-{index}.yaml"

    def golden(self, index: int) -> Path:
        return GOLDEN_DIR / f"{self.name}-{index}.json"

    @property
    def facts(self) -> Path:
        return GOLDEN_DIR / f"{self.name}-facts.json"


def _seed_default(url: str) -> dict:
    from tests.seeding import seed

    seeded = seed(url)
    return {"runs": seeded.runs, "experiments": seeded.experiments}


def _seed_mlflow3(url: str) -> dict:
    from tests.seeding_mlflow3 import seed_mlflow3

    return {"logged": {str(k): list(v) for k, v in seed_mlflow3(url).items()}}


def _change_everything(url: str, facts: dict) -> None:
    """What a day brings: a new run and version, a version of an old run, an alias moved, a run
    deleted, an experiment renamed, a model's description edited."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    runs, experiments = facts["runs"], facts["experiments"]
    new = client.create_run(experiments["churn"], run_name="retrained")
    client.log_param(new.info.run_id, "lr", "0.05")
    client.log_metric(new.info.run_id, "accuracy", 0.95)
    client.set_terminated(new.info.run_id)
    facts["runs"]["retrained"] = new.info.run_id
    client.create_model_version("churn_model", f"runs:/{new.info.run_id}/model", run_id=new.info.run_id)
    client.create_model_version("churn_model", f"runs:/{runs['default']}/model", run_id=runs["default"])
    client.set_registered_model_alias("churn_model", "champion", "4")
    client.delete_run(runs["killed"])
    client.rename_experiment(experiments["odd"], "fraud renamed")
    client.update_registered_model("churn_model", description="Predicts churn, retrained")


SCENARIOS = (
    Scenario("seeded", _seed_default, (Step(),)),
    Scenario("mlflow3", _seed_mlflow3, (Step({"include_logged_models": True, "include_signatures": True}),),
             proxy_artifacts=True),
    # lookback 0: the incremental step re-reads only what changed, so versions are completed in bulk
    Scenario("incremental", _seed_default, (
        Step({"incremental": True, "incremental_lookback_sec": 0}, stateful=True),
        Step({"incremental": True, "incremental_lookback_sec": 0}, _change_everything, stateful=True),
    )),
)


def step_recipe(step: Step, tracking_uri: str, workdir: Path, index: int):
    from connector.config.recipe import parse_recipe

    config = {"pipeline_name": "golden",
              "source": {"type": "mlflow", "config": {"tracking_uri": tracking_uri, "max_workers": 1,
                                                      **step.source}},
              "sink": {"type": "file", "config": {"filename": str(workdir / f"out-{index}.json")}}}
    if step.stateful:
        config["state"] = {"path": str(workdir / "state.json"), "max_removal_ratio": 0.5}
    return parse_recipe(config)


def comparable(path: Path) -> list:
    """The proposals of a file sink's output, in order, without systemMetadata."""
    return [{k: v for k, v in record.items() if k != "systemMetadata"}
            for record in json.loads(path.read_text(encoding="utf-8"))]


def summary(report) -> dict:
    return {"ok": report.ok, "mode": report.mode, "proposals": report.proposals,
            "entities_removed": report.entities_removed, "crawled": dict(sorted(report.crawled.items()))}


def run_step(scenario: Scenario, index: int, tracking_uri: str, workdir: Path, record_mode: str):
    """Run one step through the cassette; (report, comparable output)."""
    from connector.pipeline import run_ingest

    recipe = step_recipe(scenario.steps[index], tracking_uri, workdir, index)
    with recorder(record_mode).use_cassette(str(scenario.cassette(index)), allow_playback_repeats=False) as cassette:
        report = run_ingest(recipe)
        if record_mode == "none":
            assert cassette.all_played, f"{scenario.name} step {index}: recorded requests not made again"
    return report, comparable(workdir / f"out-{index}.json")


def record(scenario: Scenario, tmp: Path) -> None:
    from tests.mlflow_server import free_port, mlflow_server

    GOLDEN_DIR.mkdir(exist_ok=True)
    with mlflow_server(tmp / "store", free_port(), proxy_artifacts=scenario.proxy_artifacts) as url:
        facts = scenario.seed(url)
        facts["tracking_uri"] = url
        workdir = tmp / "work"
        workdir.mkdir()
        for index, step in enumerate(scenario.steps):
            if step.mutate is not None:
                step.mutate(url, facts)
            scenario.cassette(index).unlink(missing_ok=True)
            report, output = run_step(scenario, index, url, workdir, "all")
            if not report.ok:
                raise RuntimeError(f"{scenario.name} step {index} failed: {report.failures}")
            scenario.golden(index).write_text(json.dumps(
                {"summary": summary(report), "proposals": output}, indent=1, ensure_ascii=False) + "\n",
                encoding="utf-8")
    scenario.facts.write_text(json.dumps(facts, indent=2) + "\n", encoding="utf-8")
