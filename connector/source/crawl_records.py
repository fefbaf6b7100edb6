"""What a crawl yields (complete, immutable records), and the plain-data settings and plans that
shape it. A record carries everything mapping needs: a version record holds its run, its
LoggedModel and its signature when it is yielded."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional, Protocol, TypeVar, Union

from connector.source.mlflow_objects import Experiment, LoggedModel, MalformedRecord, ModelVersion, RegisteredModel, Run

if TYPE_CHECKING:
    from connector.source.evaluation import EvaluationDataset


@dataclass(frozen=True)
class NameFilter:
    """Regexes matched from the start of a name (re.match); deny wins over allow."""
    allow: tuple[str, ...] = (".*",)
    deny: tuple[str, ...] = ()
    ignore_case: bool = False

    def allows(self, name: str) -> bool:
        flags = re.IGNORECASE if self.ignore_case else 0
        if any(re.match(p, name, flags) for p in self.deny):
            return False
        return any(re.match(p, name, flags) for p in self.allow)


@dataclass(frozen=True)
class CrawlSettings:
    include_experiments: bool = True
    include_runs: bool = True
    include_logged_models: bool = False
    include_signatures: bool = False
    include_evaluation_datasets: bool = False
    include_deleted: bool = False
    runs_page_size: int = 1000
    max_workers: int = 4
    experiments: NameFilter = NameFilter()
    models: NameFilter = NameFilter()
    include_prompts: bool = False  # the Prompt Registry's prompts and versions
    include_agents: bool = False   # LoggedModels of model_type "agent"


# -- records -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExperimentRecord:
    experiment: Experiment


@dataclass(frozen=True, slots=True)
class RunRecord:
    run: Run
    experiment: Experiment
    produced_versions: tuple[ModelVersion, ...] = ()
    # include_logged_models: the run's LoggedModels no version registers (they become its outputs)
    logged_models: tuple[LoggedModel, ...] = ()
    # an evaluation run: the models (versions registering, or unregistered LoggedModels) it evaluated
    evaluated_models: tuple[Union[ModelVersion, LoggedModel], ...] = ()


@dataclass(frozen=True, slots=True)
class ModelGroupRecord:
    model: RegisteredModel
    versions: tuple[ModelVersion, ...]


@dataclass(frozen=True, slots=True)
class VersionRecord:
    version: ModelVersion
    model: RegisteredModel
    run: Optional[Run]                          # None: no run, or the run no longer exists
    is_latest: bool = False                     # the highest version of its registered model
    logged_model: Optional[LoggedModel] = None  # MLflow 3: the LoggedModel it registers
    signature_inputs: Optional[tuple] = None    # include_signatures: the model's input columns


@dataclass(frozen=True, slots=True)
class LoggedModelRecord:
    """include_logged_models: a LoggedModel no registry version points at."""
    logged_model: LoggedModel
    experiment: Experiment
    run: Optional[Run] = None  # its source run: params, training data and metrics to de-duplicate


@dataclass(frozen=True, slots=True)
class PromptRecord:
    """include_prompts: a Prompt Registry prompt with every version (aliases merged in)."""
    prompt: RegisteredModel
    versions: tuple[ModelVersion, ...]


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """include_agents: a LoggedModel MLflow marks as an agent."""
    logged_model: LoggedModel
    experiment: Experiment
    run: Optional[Run] = None  # its source run: the datasets it read, its description
    is_latest: bool = True     # the newest agent of its name in its experiment


@dataclass(frozen=True, slots=True)
class EvaluationDatasetRecord:
    """include_evaluation_datasets: a GenAI evaluation dataset (MLflow 3)."""
    dataset: "EvaluationDataset"


CrawlRecord = Union[ExperimentRecord, RunRecord, ModelGroupRecord, VersionRecord, LoggedModelRecord,
                    PromptRecord, AgentRecord, EvaluationDatasetRecord]


# -- what the crawl tells as it goes, besides records -----------------------------------------
@dataclass(frozen=True)
class PageProgress:
    """Resumable crawls: every run of a page has been yielded. With batch_done, the whole batch
    of experiments is done; otherwise runs up to `start_time` (and `ids_at_start_time` at it) are."""
    experiment_ids: tuple[str, ...]
    start_time: Optional[int]
    ids_at_start_time: tuple[str, ...]
    batch_done: bool = False


@dataclass(frozen=True, slots=True)
class RunsPageEnd:
    """A marker in the crawl's stream (resumable crawls): every run of a page is yielded before
    it. Whoever delivers the stream may take a checkpoint here."""
    page: PageProgress


@dataclass(frozen=True, slots=True)
class RunGone:
    """A marker in the crawl's stream (incremental crawls): MLflow shows this run deleted, and it
    is not yielded as a record."""
    run_id: str


@dataclass(frozen=True, slots=True)
class NotListed:
    """A marker in the crawl's stream: MLflow refused a listing (prompts, evaluation datasets), so
    this run cannot tell which of them are gone: what the state knows of these entity types is
    kept, not removed."""
    entity_types: tuple[str, ...]


CrawlMarker = Union[RunsPageEnd, RunGone]
MARKER_TYPES = (RunsPageEnd, RunGone, NotListed)  # what the crawl's stream holds besides records


class CrawlObserver(Protocol):
    def seen(self, kind: str, count: int = 1) -> None: ...
    def filter_out(self, kind: str, count: int) -> None: ...  # listed, left out by a pattern
    def warning(self, title: str, message: str) -> None: ...
    def failure(self, title: str, message: str) -> None: ...
    def info(self, title: str, message: str) -> None: ...
    def record_failed(self, what: str, problem: str) -> None: ...


class RunsObserver(CrawlObserver, Protocol):
    """What a run strategy (runs.py) tells besides runs; the crawler turns it into markers."""
    def runs_page_done(self, page: PageProgress) -> None: ...
    def run_deleted(self, run_id: str) -> None: ...


T = TypeVar("T")


def parsed(raws: Iterable[Any], parse: Callable[[Any], T], observer: CrawlObserver) -> Iterator[T]:
    """Each item parsed; one whose fields are not MLflow's is told to the observer and left out
    (that record fails, the others go on)."""
    for raw in raws:
        try:
            yield parse(raw)
        except MalformedRecord as exc:
            observer.record_failed(exc.what, exc.problem)


# -- plans: plain data -----------------------------------------------------------------------
@dataclass(frozen=True)
class FullPlan:
    """Everything; with `resumable`, runs oldest first with a RunsPageEnd after each page."""
    resumable: bool = False


@dataclass(frozen=True)
class ResumePlan:
    """Go on with a full crawl that stopped: skip finished experiment batches, and in the batch
    that was under way, runs before `start_time` or listed in `ids_at_start_time`."""
    done_experiments: frozenset[str] = frozenset()
    current_experiment_ids: tuple[str, ...] = ()
    start_time: int = 0
    ids_at_start_time: tuple[str, ...] = ()


@dataclass(frozen=True)
class IncrementalPlan:
    """Read only what may have changed since a checkpoint. MLflow runs carry no update time:
    new runs are found by start time; runs open at the checkpoint, or newly linked to a version,
    are read again by id; renamed experiments have all their runs read again (their container
    changed). Versions are yielded when their registry data changed or their run was read."""
    runs_started_since: int
    refetch_run_ids: frozenset[str] = frozenset()
    refetch_experiment_ids: frozenset[str] = frozenset()
    changed_versions: frozenset[tuple[str, str]] = frozenset()  # (model name, version)


CrawlPlan = Union[FullPlan, ResumePlan, IncrementalPlan]
