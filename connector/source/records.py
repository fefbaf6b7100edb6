"""What a crawl yields, and the plans and settings that shape it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

from connector.source.entities import Experiment, LoggedModel, ModelVersion, RegisteredModel, Run


@dataclass(frozen=True)
class CrawlSettings:
    include_experiments: bool = True
    include_runs: bool = True
    include_logged_models: bool = False
    include_signatures: bool = False
    include_deleted: bool = False
    runs_page_size: int = 1000
    max_workers: int = 4
    experiment_allowed: callable = lambda name: True
    model_allowed: callable = lambda name: True


@dataclass(slots=True)
class ExperimentRecord:
    experiment: Experiment


@dataclass(slots=True)
class RunRecord:
    run: Run
    experiment: Experiment
    produced_versions: list[ModelVersion] = field(default_factory=list)
    # include_logged_models: the run's LoggedModels (those no version registers become its outputs)
    logged_models: list[LoggedModel] = field(default_factory=list)


@dataclass(slots=True)
class ModelGroupRecord:
    model: RegisteredModel
    versions: list[ModelVersion]


@dataclass(slots=True)
class VersionRecord:
    version: ModelVersion
    model: RegisteredModel
    run: Optional[Run]
    run_pending: bool = False  # incremental crawls: the run exists but was not read (resolve_runs)
    is_latest: bool = False    # the highest version of its registered model
    logged_model: Optional[LoggedModel] = None  # MLflow 3: the LoggedModel it registers
    signature_inputs: Optional[list] = None      # include_signatures: the model's input columns


@dataclass(slots=True)
class LoggedModelRecord:
    """include_logged_models: a LoggedModel no registry version points at."""
    logged_model: LoggedModel
    experiment: Experiment
    run: Optional[Run] = None  # its source run: params, training data and metrics to de-duplicate


@dataclass(slots=True)
class DeletedRunRecord:
    """Incremental crawls: a run MLflow now lists as deleted."""
    run_id: str
    experiment_id: str


@dataclass(slots=True)
class RunsPageDone:
    """Full crawls: every run of a page has been yielded. With batch_done, the whole batch of
    experiments is done; otherwise runs up to `start_time` (and `ids_at_start_time` at it) are."""
    experiment_ids: list
    start_time: Optional[int]
    ids_at_start_time: list
    batch_done: bool = False


CrawlRecord = Union[ExperimentRecord, RunRecord, ModelGroupRecord, VersionRecord, DeletedRunRecord,
                    RunsPageDone, LoggedModelRecord]


@dataclass(frozen=True)
class ResumePlan:
    """Go on with a full crawl that stopped: skip finished experiment batches, and in the batch
    that was under way, runs before `start_time` or listed in `ids_at_start_time`."""
    done_experiments: frozenset = frozenset()
    current_experiment_ids: tuple = ()
    start_time: int = 0
    ids_at_start_time: tuple = ()


@dataclass(frozen=True)
class IncrementalPlan:
    """Read only what may have changed since a checkpoint. MLflow runs carry no update time:
    new runs are found by start time, runs that were open at the checkpoint are read again."""
    runs_started_since: int
    refetch_run_ids: frozenset = frozenset()
    # versions whose run must be read again (a new version links its run to a new model)
    refetch_run_of: Callable[[ModelVersion], bool] = lambda version: False
    # experiments whose runs must all be read again (renamed: their runs' container changed)
    refetch_runs_in: Callable[[Experiment], bool] = lambda experiment: False
