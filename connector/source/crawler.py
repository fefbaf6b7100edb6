"""Crawl MLflow with bulk paged reads; yield complete, immutable records.

A crawl has two steps, and data flows one way through them:
1. `list_mlflow()` lists what is listed whole: experiments and the registry (an index);
2. `crawl(listing, plan)` yields, in this order: (on request) GenAI evaluation datasets, experiments,
   runs (streamed page by page, not kept), LoggedModels no version registers (on request), then
   each registered model followed by its versions; then (on request) the Prompt Registry's prompts
   and the agents. Versions come after the runs because they carry their source run, LoggedModel
   and signature: only the runs some version points at are kept, so memory grows with versions,
   not with runs. The plan (plain data, from whoever keeps the state) says which runs and versions
   an incremental crawl reads.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Iterator, Optional, Union

from connector.source.backend import Backend
from connector.source.mlflow_objects import Experiment, LoggedModel, ModelVersion, RegisteredModel, Run
from connector.source.agents import agent_records, is_agent
from connector.source.evaluation import EvaluationDatasetReader, evaluated_models, models_by_evaluation_run
from connector.source.logged_models import LoggedModelIndex, LoggedModelReader
from connector.source.prompts import PromptReader, prompt_records
from connector.source.crawl_records import (
    CrawlMarker, CrawlObserver, CrawlPlan, CrawlRecord, CrawlSettings, EvaluationDatasetRecord, ExperimentRecord,
    FullPlan, IncrementalPlan, LoggedModelRecord, ModelGroupRecord, NotListed, PageProgress, ResumePlan, RunGone,
    RunRecord,
    RunsPageEnd, VersionRecord,
)
from connector.source.registry_index import MlflowListing, RegistryIndex, experiments, list_mlflow
from connector.source.runs import FullRuns, IncrementalRuns, ResumableRuns, RunReader
from connector.source.signatures import SignatureReader, logged_signature, model_location

RunStrategy = Union[FullRuns, ResumableRuns, IncrementalRuns]
_FULL = FullPlan()


class _Markers:
    """The observer a run strategy gets: page ends and deleted runs become markers the crawl
    yields in the stream (in order: a page's end comes after its runs); the rest goes on."""

    def __init__(self, observer: CrawlObserver):
        self.observer = observer
        self.pending: list[CrawlMarker] = []

    def seen(self, kind: str, count: int = 1) -> None:
        self.observer.seen(kind, count)

    def filter_out(self, kind: str, count: int) -> None:
        self.observer.filter_out(kind, count)

    def warning(self, title: str, message: str) -> None:
        self.observer.warning(title, message)

    def failure(self, title: str, message: str) -> None:
        self.observer.failure(title, message)

    def info(self, title: str, message: str) -> None:
        self.observer.info(title, message)

    def record_failed(self, what: str, problem: str) -> None:
        self.observer.record_failed(what, problem)

    def runs_page_done(self, page: PageProgress) -> None:
        self.pending.append(RunsPageEnd(page))

    def run_deleted(self, run_id: str) -> None:
        self.pending.append(RunGone(run_id))

    def take(self) -> list[CrawlMarker]:
        taken, self.pending = self.pending, []
        return taken


def _with_markers(runs: Iterator[Run], markers: _Markers) -> Iterator[Union[Run, CrawlMarker]]:
    """`runs` with the markers the strategy gave in between, in order. When reading a page fails,
    the markers before it still come first (a resumable crawl can checkpoint those pages)."""
    while True:
        try:
            run = next(runs)
        except StopIteration:
            break
        except Exception:
            yield from markers.take()
            raise
        yield from markers.take()
        yield run
    yield from markers.take()


class MlflowCrawler:
    """Use as a context manager: it owns the crawl's worker threads."""

    def __init__(self, backend: Backend, settings: CrawlSettings, observer: CrawlObserver):
        self.backend = backend
        self.settings = settings
        self.observer = observer
        self._executor = ThreadPoolExecutor(max_workers=settings.max_workers, thread_name_prefix="mlflow-crawl")
        self._runs = RunReader(backend, settings.runs_page_size, self._executor, observer)
        self._logged_models = LoggedModelReader(backend, observer)
        self._signatures = SignatureReader(backend, observer, self._executor)

    def __enter__(self) -> "MlflowCrawler":
        return self

    def __exit__(self, *exc) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def point_lookups(self) -> int:
        return self._runs.point_lookups

    @property
    def _view_type(self) -> str:
        return "ALL" if self.settings.include_deleted else "ACTIVE_ONLY"

    def list_mlflow(self) -> MlflowListing:
        parallel = self._executor if self.settings.max_workers > 1 else None
        listing = list_mlflow(self.backend, self.settings.models, self.settings.include_experiments,
                               self.observer, parallel)
        self.observer.seen("registered_models", len(listing.registry.models))
        self.observer.seen("model_versions", listing.registry.version_count)
        return listing

    def _listed(self, experiment: Experiment) -> bool:
        return experiment.lifecycle_stage == "active" or self.settings.include_deleted

    def _included(self, experiment: Experiment) -> bool:
        return self._listed(experiment) and self.settings.experiments.allows(experiment.name)

    # -- the crawl --------------------------------------------------------------------------
    def crawl(self, listing: MlflowListing, plan: CrawlPlan = _FULL
              ) -> Iterator[Union[CrawlRecord, CrawlMarker, NotListed]]:
        included = [e for e in listing.experiments if self._included(e)]
        self.observer.filter_out("experiments", sum(1 for e in listing.experiments if self._listed(e)) - len(included))
        logged = self._listed_logged_models(listing, included, plan)
        yield from self._evaluation_dataset_records()
        kept_runs: dict[str, Run] = {}  # runs some version or unregistered LoggedModel points at
        if self.settings.include_experiments:
            self.observer.seen("experiments", len(included))
            for experiment in included:
                yield ExperimentRecord(experiment)
            if self.settings.include_runs and included:
                yield from self._run_records(listing, included, plan, logged, kept_runs)
        yield from self._registry_records(listing, included, plan, logged, kept_runs)
        yield from self._prompt_and_agent_records(included)

    def _evaluation_dataset_records(self) -> Iterator[Union[EvaluationDatasetRecord, NotListed]]:
        """Listed whole, in every crawl: first, as the evaluation runs read them."""
        if self.settings.include_evaluation_datasets:
            reader = EvaluationDatasetReader(self.backend, self.observer)
            for dataset in reader.list():
                self.observer.seen("evaluation_datasets")
                yield EvaluationDatasetRecord(dataset)
            if reader.refused:
                yield NotListed(("dataset",))

    def _prompt_and_agent_records(self, included: list[Experiment]) -> Iterator[Union[CrawlRecord, NotListed]]:
        """Listed whole on every run (two paged listings; agents per batch of experiments): the
        fingerprints tell an incremental run what changed."""
        if self.settings.include_prompts:
            reader = PromptReader(self.backend, self.settings.models, self.observer)
            yield from prompt_records(reader.index(), self.observer)
            if reader.refused:
                yield NotListed(("mlModelGroup", "mlModel"))  # prompts are registry entities
        if self.settings.include_agents:
            agent_experiments = included if self.settings.include_experiments else [
                e for e in experiments(self.backend, self.observer) if self._included(e)]
            yield from agent_records(self._logged_models, self._runs, agent_experiments, self._executor,
                                     self.observer)

    def _run_strategy(self, listing: MlflowListing, included_ids: list[str], plan: CrawlPlan) -> RunStrategy:
        if isinstance(plan, IncrementalPlan):
            return IncrementalRuns(plan, included_ids, [e.experiment_id for e in listing.experiments],
                                   self._view_type, self.settings.include_deleted)
        if isinstance(plan, ResumePlan):
            return ResumableRuns(included_ids, self._view_type, plan)
        if plan.resumable:
            return ResumableRuns(included_ids, self._view_type, None)
        return FullRuns(included_ids, self._view_type)

    def _run_records(self, listing: MlflowListing, included: list[Experiment], plan: CrawlPlan,
                     logged: LoggedModelIndex, kept_runs: dict[str, Run]) -> Iterator[Union[RunRecord, CrawlMarker]]:
        by_id = {e.experiment_id: e for e in included}
        # with include_logged_models only: then every crawl, full or incremental, lists LoggedModels first
        evaluated_index = models_by_evaluation_run(listing.registry.all_versions(), [
            *logged.registered.values(), *logged.unregistered]) if self.settings.include_logged_models else {}
        strategy = self._run_strategy(listing, list(by_id), plan)
        markers = _Markers(self.observer)
        for run in _with_markers(strategy.runs(self._runs, markers), markers):
            if isinstance(run, (RunsPageEnd, RunGone)):
                yield run
                continue
            self.observer.seen("runs")
            experiment = by_id.get(run.experiment_id)
            if experiment is None:  # a server answered a run of an experiment it did not ask for
                self.observer.record_failed(f"run {run.run_id}", f"its experiment {run.experiment_id!r} is not one "
                                            "the crawl listed")
                continue
            produced = listing.registry.versions_by_run.get(run.run_id, ())
            models = logged.by_run.get(run.run_id, ())
            if produced or models:
                kept_runs[run.run_id] = run
            yield RunRecord(run, experiment, produced, models, evaluated_models(run, evaluated_index))

    # -- LoggedModels -------------------------------------------------------------------------
    def _listed_logged_models(self, listing: MlflowListing, included: list[Experiment],
                              plan: CrawlPlan) -> LoggedModelIndex:
        """Every LoggedModel, listed before the runs (a run names the unregistered ones it made),
        unless an incremental crawl does not want the unregistered ones: then only those its
        changed versions register are looked up, after the runs."""
        if isinstance(plan, IncrementalPlan) and not self.settings.include_logged_models:
            return LoggedModelIndex()
        wanted = {v.model_id for _, v in listing.registry.all_versions() if v.model_id}
        unregistered_too = self.settings.include_logged_models
        if not wanted and not unregistered_too:
            return LoggedModelIndex()
        by_id = {e.experiment_id: e for e in included}
        registered: dict[str, LoggedModel] = {}
        unregistered: list[LoggedModel] = []
        for lm in self._logged_models.list([e.experiment_id for e in listing.experiments] or list(by_id),
                                           self._executor):
            self.observer.seen("logged_models")
            if lm.model_id in wanted:
                registered[lm.model_id] = lm
            elif unregistered_too and self._plain_unregistered(lm, by_id):
                unregistered.append(lm)
        return LoggedModelIndex.build(registered, unregistered)

    def _plain_unregistered(self, lm: LoggedModel, included: dict[str, Experiment]) -> bool:
        """An unregistered LoggedModel of an included experiment; agents have their own records."""
        return not lm.registered and lm.experiment_id in included and not (self.settings.include_agents
                                                                           and is_agent(lm))

    def _registered_logged_models(self, listing: MlflowListing, versions: list, runs: dict[str, Run],
                                  plan: CrawlPlan, logged: LoggedModelIndex) -> dict[str, LoggedModel]:
        if not isinstance(plan, IncrementalPlan) or self.settings.include_logged_models:
            return logged.registered
        wanted = {v.model_id for _, v in versions if v.model_id}
        if not wanted:
            return {}
        experiment_ids = sorted({runs[v.run_id].experiment_id for _, v in versions if v.run_id in runs}
                                or set(self._all_experiment_ids(listing)))
        return {lm.model_id: lm for lm in self._logged_models.list(experiment_ids, self._executor)
                if lm.model_id in wanted}

    def _with_signature(self, lm: LoggedModel) -> LoggedModel:
        if not self.settings.include_signatures:
            return lm
        signature = self._signatures.get(lm.artifact_uri)
        return replace(lm, signature_inputs=list(signature) if signature is not None else None)

    # -- registry -----------------------------------------------------------------------------
    def _versions_to_yield(self, registry: RegistryIndex, plan: CrawlPlan,
                           kept_runs: dict[str, Run]) -> list[tuple[RegisteredModel, ModelVersion]]:
        """Every version; in an incremental crawl, those whose registry data changed or whose run
        was read again (the others are unchanged, and the plan's maker knows them)."""
        if not isinstance(plan, IncrementalPlan):
            return list(registry.all_versions())
        return [(m, v) for m, v in registry.all_versions()
                if (v.name, v.version) in plan.changed_versions or v.run_id in kept_runs]

    def _all_experiment_ids(self, listing: MlflowListing) -> list[str]:
        return [e.experiment_id for e in (listing.experiments or experiments(self.backend, self.observer))]

    def _source_runs(self, listing: MlflowListing, versions: list, logged: LoggedModelIndex, plan: CrawlPlan,
                     kept_runs: dict[str, Run]) -> dict[str, Run]:
        """The runs of these versions and unregistered LoggedModels: kept from the crawl, the rest
        looked up in bulk."""
        runs = dict(kept_runs)
        version_runs = {v.run_id for _, v in versions if v.run_id}
        missing = (version_runs | {lm.source_run_id for lm in logged.unregistered if lm.source_run_id}) - set(runs)
        if not missing:
            return runs
        runs.update(self._runs.lookup(missing, self._all_experiment_ids(listing)))
        if not isinstance(plan, IncrementalPlan):
            for run_id in sorted((missing & version_runs) - set(runs)):
                names = ", ".join(f"{v.name} v{v.version}" for v in listing.registry.versions_by_run[run_id])
                self.observer.warning("Source run not found", f"run {run_id} of {names} no longer exists in MLflow")
        return runs

    def _registry_records(self, listing: MlflowListing, included: list[Experiment], plan: CrawlPlan,
                          logged: LoggedModelIndex, kept_runs: dict[str, Run]) -> Iterator[CrawlRecord]:
        registry = listing.registry
        versions = self._versions_to_yield(registry, plan, kept_runs)
        runs = self._source_runs(listing, versions, logged, plan, kept_runs)
        registered = self._registered_logged_models(listing, versions, runs, plan, logged)
        by_id = {e.experiment_id: e for e in included}
        for lm in logged.unregistered:
            yield LoggedModelRecord(self._with_signature(lm), by_id[lm.experiment_id], runs.get(lm.source_run_id))
        if self.settings.include_signatures:  # start every read now; they run while versions are mapped
            for _, v in versions:
                self._signatures.start(model_location(v, registered.get(v.model_id or ""), runs.get(v.run_id)))
        if not registry.models:
            self.observer.warning("Empty registry", "0 registered models found in the model registry")
        elif versions and not self.settings.include_signatures:
            self.observer.info("Signatures not read", "include_signatures is off: the versions' input columns "
                                                      "(mlFeature entities) were not read")
        to_yield: dict[str, list[ModelVersion]] = {}
        for model, version in versions:
            to_yield.setdefault(model.name, []).append(version)
        for model in registry.models:
            yield ModelGroupRecord(model, registry.versions_by_model[model.name])
            latest = registry.latest_version_number(model.name)
            for version in to_yield.get(model.name, ()):
                yield self._version_record(model, version, runs.get(version.run_id),
                                           registered.get(version.model_id or ""), latest)

    def _version_record(self, model: RegisteredModel, version: ModelVersion, run: Optional[Run],
                        logged_model: Optional[LoggedModel], latest: Optional[int]) -> VersionRecord:
        signature = (self._signatures.get(model_location(version, logged_model, run),
                                          logged_signature(run, version.source))
                     if self.settings.include_signatures else None)
        return VersionRecord(version, model, run, is_latest=version.version_number == latest,
                             logged_model=logged_model, signature_inputs=signature)
