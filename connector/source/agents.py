"""LoggedModels MLflow marks as agents (`model_type` "agent"), listed in bulk with a filter on that
attribute (paged per batch of experiments), with their source runs looked up in bulk."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from connector.source.crawl_records import AgentRecord, CrawlObserver
from connector.source.logged_models import LoggedModelReader
from connector.source.mlflow_objects import Experiment, LoggedModel
from connector.source.runs import RunReader

AGENT_MODEL_TYPE = "agent"
AGENTS_FILTER = f"model_type = '{AGENT_MODEL_TYPE}'"


def is_agent(lm: LoggedModel) -> bool:
    return lm.model_type.lower() == AGENT_MODEL_TYPE


def _latest_by_name(agents: list[LoggedModel]) -> set[str]:
    """The model id of the newest agent of each name in each experiment."""
    newest: dict[tuple[str, str], LoggedModel] = {}
    for lm in agents:
        key = (lm.experiment_id, lm.name)
        if key not in newest or (lm.creation_timestamp or 0, lm.model_id) > (
                newest[key].creation_timestamp or 0, newest[key].model_id):
            newest[key] = lm
    return {lm.model_id for lm in newest.values()}


def agent_records(models: LoggedModelReader, runs: RunReader, included: list[Experiment],
                  executor: ThreadPoolExecutor, observer: CrawlObserver) -> Iterator[AgentRecord]:
    """Every agent of the included experiments, each with its source run."""
    by_id = {e.experiment_id: e for e in included}
    agents = sorted((lm for lm in models.list(list(by_id), executor, AGENTS_FILTER)
                     if is_agent(lm) and lm.experiment_id in by_id), key=lambda lm: lm.model_id)
    observer.seen("agents", len(agents))
    run_ids = {lm.source_run_id for lm in agents if lm.source_run_id}
    source_runs = runs.lookup(run_ids, list(by_id)) if run_ids else {}
    latest = _latest_by_name(agents)
    for lm in agents:
        yield AgentRecord(lm, by_id[lm.experiment_id], source_runs.get(lm.source_run_id),
                          is_latest=lm.model_id in latest)
