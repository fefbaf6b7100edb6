"""Crawl MLflow with bulk paged reads and resolve cross-references from small indexes.

Order of what is yielded: experiments, then runs (streamed page by page, not
kept), then each registered model followed by its versions. Versions come last
because they carry their source run's params and metrics: only the runs that
some version points at are kept, so memory grows with versions, not with runs.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterator, Optional, Protocol, Union

from connector.source.artifacts import mlmodel_location, read_mlmodel, signature_inputs
from connector.source.entities import Experiment, LoggedModel, ModelVersion, RegisteredModel, Run
from connector.source.errors import MlflowApiError, SourceError
from connector.source.records import (
    CrawlRecord, CrawlSettings, DeletedRunRecord, ExperimentRecord, IncrementalPlan, LoggedModelRecord,
    ModelGroupRecord, ResumePlan, RunRecord, RunsPageDone, VersionRecord,
)

EXPERIMENTS_PAGE = 50000      # server maximum
REGISTERED_MODELS_PAGE = 1000  # server maximum
LOGGED_MODELS_PAGE = 1000
MODEL_VERSIONS_PAGE = 10000
EXPERIMENT_IDS_PER_RUN_SEARCH = 100
RUN_IDS_PER_LOOKUP = 100


class Backend(Protocol):
    tracking_location: str
    registry_location: str
    requests_made: int

    def search_experiments(self, view_type, max_results, page_token): ...
    def search_runs(self, experiment_ids, filter_string, view_type, max_results, page_token): ...
    def get_run(self, run_id): ...
    def search_registered_models(self, max_results, page_token): ...
    def search_model_versions(self, filter_string, max_results, page_token): ...


class CrawlObserver(Protocol):
    def seen(self, kind: str, count: int = 1) -> None: ...
    def warning(self, title: str, message: str) -> None: ...
    def info(self, title: str, message: str) -> None: ...


def _paged(fetch) -> Iterator[dict]:
    token = None
    while True:
        items, token = fetch(token)
        yield from items
        if not token:
            return


def _prefetched(streams: list[Callable], executor: ThreadPoolExecutor) -> Iterator[tuple[int, list]]:
    """Walk paged streams one after another, keeping the next request in flight while the
    caller maps the current page; yields (stream index, page). At most two pages are in memory."""
    pending: Optional[Future] = None
    index = 0
    if streams:
        pending = executor.submit(streams[0], None)
    while pending is not None:
        items, token = pending.result()
        current = index
        if token:
            pending = executor.submit(streams[index], token)
        elif index + 1 < len(streams):
            index += 1
            pending = executor.submit(streams[index], None)
        else:
            pending = None
        yield current, items


def _quote_filter_value(value: str) -> str:
    return f'"{value}"' if "'" in value else f"'{value}'"


class MlflowCrawler:
    def __init__(self, backend: Backend, settings: CrawlSettings, observer: CrawlObserver):
        self.backend = backend
        self.settings = settings
        self.observer = observer
        self.point_lookups = 0
        self._all_experiment_ids: list[str] = []
        self._logged_models_supported = True
        self._signatures: dict[str, Future] = {}

    @property
    def _view_type(self) -> str:
        return "ALL" if self.settings.include_deleted else "ACTIVE_ONLY"

    # -- registry ---------------------------------------------------------
    def _registered_models(self) -> list[RegisteredModel]:
        models = []
        for raw in _paged(lambda t: self.backend.search_registered_models(REGISTERED_MODELS_PAGE, t)):
            model = RegisteredModel.from_json(raw)
            if self.settings.model_allowed(model.name):
                models.append(model)
        models.sort(key=lambda m: m.name)
        return models

    def _list_all_versions(self) -> Optional[list[ModelVersion]]:
        """Every version in one paged listing; None when the registry refuses that."""
        try:
            return [ModelVersion.from_json(raw) for raw in
                    _paged(lambda t: self.backend.search_model_versions("", MODEL_VERSIONS_PAGE, t))]
        except MlflowApiError as exc:
            # Unity Catalog (and some proxies) refuse a listing without a model name.
            self.observer.info(
                "Per-model version listing",
                f"the registry refused to list all versions at once ({exc.error_code or exc}); "
                "listing them model by model",
            )
            return None

    def _versions_by_model(self, models: list[RegisteredModel],
                           listed: Optional[list[ModelVersion]]) -> dict[str, list[ModelVersion]]:
        by_model: dict[str, list[ModelVersion]] = {m.name: [] for m in models}
        if listed is not None:
            for version in listed:
                if version.name in by_model:
                    by_model[version.name].append(version)
        else:
            for name in by_model:
                flt = f"name = {_quote_filter_value(name)}"
                by_model[name] = [ModelVersion.from_json(raw) for raw in _paged(
                    lambda t, flt=flt: self.backend.search_model_versions(flt, MODEL_VERSIONS_PAGE, t))]
        for model in models:
            versions = by_model[model.name]
            aliases_by_version: dict[str, list[str]] = {}
            for alias, version in model.aliases.items():
                aliases_by_version.setdefault(version, []).append(alias)
            for v in versions:
                v.aliases = sorted(set(v.aliases) | set(aliases_by_version.get(v.version, [])))
            versions.sort(key=lambda v: (v.version_number, v.version))
        return by_model

    # -- tracking ---------------------------------------------------------
    def _experiments(self) -> list[Experiment]:
        return [
            Experiment.from_json(raw)
            for raw in _paged(lambda t: self.backend.search_experiments("ALL", EXPERIMENTS_PAGE, t))
        ]

    def _experiment_included(self, experiment: Experiment) -> bool:
        if experiment.lifecycle_stage != "active" and not self.settings.include_deleted:
            return False
        return self.settings.experiment_allowed(experiment.name)

    def _runs(self, experiment_ids: list[str], filter_string: str, view_type: str,
              executor: ThreadPoolExecutor) -> Iterator[Run]:
        batches = [experiment_ids[i:i + EXPERIMENT_IDS_PER_RUN_SEARCH]
                   for i in range(0, len(experiment_ids), EXPERIMENT_IDS_PER_RUN_SEARCH)]
        streams = [self._run_stream(batch, filter_string, view_type) for batch in batches]
        for _, page in _prefetched(streams, executor):
            for raw in page:
                yield Run.from_json(raw)

    def _run_stream(self, batch: list[str], filter_string: str, view_type: str, order_by=None):
        return lambda token: self.backend.search_runs(
            batch, filter_string, view_type, self.settings.runs_page_size, token, order_by)

    def _resumable_runs(self, experiment_ids: list[str], resume: Optional["ResumePlan"],
                        executor: ThreadPoolExecutor) -> Iterator[Union[Run, "RunsPageDone"]]:
        """All runs, oldest first, with a RunsPageDone after each page: a crawl stopped after one
        can go on from there (by start time, which inserts or deletions do not shift)."""
        order = ["attributes.start_time ASC"]
        pending = [e for e in experiment_ids if not resume or e not in resume.done_experiments]
        batches: list[tuple[list[str], str, frozenset]] = []
        if resume and resume.current_experiment_ids:
            current = [e for e in resume.current_experiment_ids if e in pending]
            pending = [e for e in pending if e not in current]
            if current:
                batches.append((current, f"attributes.start_time >= {int(resume.start_time)}",
                                frozenset(resume.ids_at_start_time)))
        batches += [(pending[i:i + EXPERIMENT_IDS_PER_RUN_SEARCH], "", frozenset())
                    for i in range(0, len(pending), EXPERIMENT_IDS_PER_RUN_SEARCH)]
        streams = [self._run_stream(ids, flt, self._view_type, order) for ids, flt, _ in batches]
        last_time, ids_at_last, last_batch = None, [], None
        for index, page in _prefetched(streams, executor):
            ids, _, skip = batches[index]
            if index != last_batch:
                if last_batch is not None:
                    yield RunsPageDone(batches[last_batch][0], None, [], batch_done=True)
                last_time, ids_at_last, last_batch = None, [], index
            for raw in page:
                run = Run.from_json(raw)
                if run.start_time != last_time:
                    last_time, ids_at_last = run.start_time, []
                ids_at_last.append(run.run_id)
                if run.run_id not in skip:
                    yield run
            yield RunsPageDone(ids, last_time, list(ids_at_last))
        if last_batch is not None:
            yield RunsPageDone(batches[last_batch][0], None, [], batch_done=True)

    def _lookup_runs(self, run_ids: set[str], all_experiment_ids: list[str],
                     executor: ThreadPoolExecutor) -> dict[str, Run]:
        """Runs the crawl did not page (excluded experiments, runs off): bulk by id."""
        found: dict[str, Run] = {}
        ids = sorted(run_ids)
        for start in range(0, len(ids), RUN_IDS_PER_LOOKUP):
            chunk = ids[start:start + RUN_IDS_PER_LOOKUP]
            flt = "attributes.run_id IN (" + ", ".join(f"'{i}'" for i in chunk) + ")"
            try:
                for run in self._runs(all_experiment_ids, flt, "ALL", executor):
                    found[run.run_id] = run
            except MlflowApiError:
                break  # fall back to point look-ups below
        for run_id in ids:
            if run_id in found:
                continue
            self.point_lookups += 1
            raw = self.backend.get_run(run_id)
            if raw is not None:
                found[run_id] = Run.from_json(raw)
        return found

    # -- MLflow 3 logged models and signatures ----------------------------
    def _logged_models(self, experiment_ids: list[str], executor) -> Iterator[LoggedModel]:
        """Every LoggedModel of these experiments, paged in bulk; nothing on an MLflow 2 server."""
        if not self._logged_models_supported or not experiment_ids:
            return
        def stream(batch):
            return lambda token: self.backend.search_logged_models(batch, LOGGED_MODELS_PAGE, token)
        streams = [stream(experiment_ids[i:i + EXPERIMENT_IDS_PER_RUN_SEARCH])
                   for i in range(0, len(experiment_ids), EXPERIMENT_IDS_PER_RUN_SEARCH)]
        try:
            for _, page in _prefetched(streams, executor):
                for raw in page:
                    yield LoggedModel.from_json(raw)
        except MlflowApiError as exc:
            if exc.status != 404 and exc.error_code not in ("ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED"):
                raise
            self._logged_models_supported = False
            self.observer.info("No logged models", "this MLflow server has no LoggedModel API "
                                                   "(MLflow 2.x): model versions are read from their runs")

    def resolve_logged_models(self, model_ids: set[str], experiment_ids: list[str]) -> dict[str, LoggedModel]:
        """LoggedModels by id, listed in bulk from the given experiments (incremental crawls)."""
        if not model_ids:
            return {}
        with ThreadPoolExecutor(max_workers=2) as executor:
            found = {lm.model_id: lm for lm in self._logged_models(sorted(set(experiment_ids)), executor)
                     if lm.model_id in model_ids}
            if self.settings.include_signatures:
                for lm in found.values():
                    lm.signature_inputs = self._signature(lm.artifact_uri, executor).result()
        return found

    def complete_versions(self, records: list[VersionRecord]) -> list[VersionRecord]:
        """Fill in, in bulk, what an incremental crawl did not read for the versions it found
        changed: their runs, their LoggedModels and (include_signatures) their signatures."""
        runs = self.resolve_runs({r.version.run_id for r in records if r.run is None and r.version.run_id})
        for record in records:
            if record.run is None:
                record.run = runs.get(record.version.run_id)
            record.run_pending = False
        wanted = {r.version.model_id for r in records if r.version.model_id}
        experiments = {r.run.experiment_id for r in records if r.run} or set(self._all_experiment_ids)
        logged = self.resolve_logged_models(wanted, sorted(experiments))
        for record in records:
            record.logged_model = logged.get(record.version.model_id or "")
            if self.settings.include_signatures:
                record.signature_inputs = (record.logged_model.signature_inputs if record.logged_model else
                                           self._read_signature(mlmodel_location(
                                               record.version.source, record.run.artifact_uri if record.run else None)))
        return records

    def _signature(self, uri: Optional[str], executor) -> Future:
        """The signature's input columns under `uri`, read once per location, off the main thread."""
        if uri not in self._signatures:
            self._signatures[uri] = executor.submit(self._read_signature, uri)
        return self._signatures[uri]

    def _read_signature(self, uri: Optional[str]) -> Optional[list]:
        if not uri:
            return None
        try:
            return signature_inputs(read_mlmodel(uri, self.backend))
        except (OSError, ValueError, SourceError, ImportError) as exc:
            self.observer.warning("Signature not read", f"no MLmodel read at {uri}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # an artifact store MLflow knows but we cannot reach
            self.observer.warning("Signature not read", f"no MLmodel read at {uri}: {type(exc).__name__}: {exc}")
        return None

    def version_signature(self, version: ModelVersion, logged_model: Optional[LoggedModel],
                          run: Optional[Run]) -> Optional[list]:
        if logged_model is not None:
            return logged_model.signature_inputs
        location = mlmodel_location(version.source, run.artifact_uri if run else None)
        return self._signature(location, self._executor).result() if location else None

    # -- the crawl --------------------------------------------------------
    def _registry(self, executor: Optional[ThreadPoolExecutor] = None):
        """Registered models and their versions; the two listings run side by side with an executor."""
        if executor is None:
            models = self._registered_models()
            return models, self._versions_by_model(models, self._list_all_versions() if models else [])
        return executor.submit(self._registered_models), executor.submit(self._list_all_versions)

    def _finish_registry(self, models_future: Future, versions_future: Future):
        models = models_future.result()
        return models, self._versions_by_model(models, versions_future.result() if models else [])

    def crawl(self, plan: Union[IncrementalPlan, ResumePlan, None] = None,
              resumable: bool = False) -> Iterator[CrawlRecord]:
        """plan None: a full crawl; resumable adds RunsPageDone markers (and orders runs by start
        time) so that a ResumePlan can go on from the last one."""
        with ThreadPoolExecutor(max_workers=self.settings.max_workers,
                                thread_name_prefix="mlflow-crawl") as executor:
            self._executor = executor
            yield from self._crawl(executor, plan, resumable)

    def resolve_runs(self, run_ids: set[str]) -> dict[str, Run]:
        """Runs by id, in bulk (for versions an incremental crawl found changed)."""
        if not run_ids:
            return {}
        with ThreadPoolExecutor(max_workers=2) as executor:
            return self._lookup_runs(run_ids, self._all_experiment_ids or
                                     [e.experiment_id for e in self._experiments()], executor)

    def _incremental_runs(self, plan: IncrementalPlan, by_id: dict, all_ids: list[str],
                          version_run_ids: set[str], executor) -> Iterator[CrawlRecord]:
        """New runs (by start time), runs open at the checkpoint or newly linked to a version, and
        runs deleted since (as DeletedRunRecord)."""
        seen: set[str] = set()
        flt = f"attributes.start_time >= {int(plan.runs_started_since)}"
        for run in self._runs(list(by_id), flt, self._view_type, executor):
            seen.add(run.run_id)
            yield run
        renamed = [i for i, e in by_id.items() if plan.refetch_runs_in(e)]
        for run in self._runs(renamed, "", self._view_type, executor) if renamed else ():
            if run.run_id not in seen:
                seen.add(run.run_id)
                yield run
        again = (set(plan.refetch_run_ids) | version_run_ids) - seen
        for run in self._lookup_runs(again, all_ids, executor).values():
            if run.experiment_id in by_id and (run.lifecycle_stage == "active" or self.settings.include_deleted):
                yield run
        for run in self._runs(all_ids, "", "DELETED_ONLY", executor):
            if self.settings.include_deleted and run.experiment_id in by_id:
                if run.run_id not in seen:  # mapped like any run, with status removed
                    yield run
            else:
                yield DeletedRunRecord(run.run_id, run.experiment_id)

    def _crawl(self, executor: ThreadPoolExecutor, plan, resumable: bool) -> Iterator[CrawlRecord]:
        resume = plan if isinstance(plan, ResumePlan) else None
        plan = plan if isinstance(plan, IncrementalPlan) else None
        if self.settings.max_workers > 1:  # registry listings run alongside the experiment listing
            models_future, versions_future = self._registry(executor)
            experiments = self._experiments() if self.settings.include_experiments else []
            models, versions_by_model = self._finish_registry(models_future, versions_future)
        else:  # one request at a time
            models, versions_by_model = self._registry()
            experiments = self._experiments() if self.settings.include_experiments else []
        self._all_experiment_ids = [e.experiment_id for e in experiments]
        self.observer.seen("registered_models", len(models))
        self.observer.seen("model_versions", sum(len(v) for v in versions_by_model.values()))
        versions_by_run: dict[str, list[ModelVersion]] = {}
        for versions in versions_by_model.values():
            for v in versions:
                if v.run_id:
                    versions_by_run.setdefault(v.run_id, []).append(v)
        runs_for_versions: dict[str, Run] = {}

        included = [e for e in experiments if self._experiment_included(e)]
        if self.settings.include_experiments:
            self.observer.seen("experiments", len(included))
            for experiment in included:
                yield ExperimentRecord(experiment)
            if self.settings.include_runs and included:
                by_id = {e.experiment_id: e for e in included}
                if resume is not None or resumable:
                    runs = self._resumable_runs(list(by_id), resume, executor)
                elif plan is None:
                    runs = self._runs(list(by_id), "", self._view_type, executor)
                else:
                    linked = {v.run_id for vs in versions_by_model.values() for v in vs
                              if v.run_id and plan.refetch_run_of(v)}
                    runs = self._incremental_runs(plan, by_id, self._all_experiment_ids, linked, executor)
                for run in runs:
                    if isinstance(run, (DeletedRunRecord, RunsPageDone)):
                        yield run
                        continue
                    self.observer.seen("runs")
                    produced = versions_by_run.get(run.run_id, [])
                    if produced:
                        runs_for_versions[run.run_id] = run
                    yield RunRecord(run, by_id[run.experiment_id], produced)

        missing = set(versions_by_run) - set(runs_for_versions)
        if missing and plan is None:
            if not experiments:
                experiments = self._experiments()
            all_ids = [e.experiment_id for e in experiments]
            runs_for_versions.update(self._lookup_runs(missing, all_ids, executor))
            for run_id in sorted(missing - set(runs_for_versions)):
                names = ", ".join(f"{v.name} v{v.version}" for v in versions_by_run[run_id])
                self.observer.warning("Source run not found",
                                      f"run {run_id} of {names} no longer exists in MLflow")

        logged: dict[str, LoggedModel] = {}
        # Incremental crawls resolve LoggedModels for changed versions only, unless unregistered
        # ones are wanted too: those must be listed whole, or they would look gone.
        if plan is None or self.settings.include_logged_models:
            yield from self._crawl_logged_models(versions_by_model, included, logged, executor)
        signatures = self.settings.include_signatures and plan is None
        if signatures:  # start every read now; they run while versions are mapped
            for versions in versions_by_model.values():
                for v in versions:
                    lm = logged.get(v.model_id or "")
                    run = runs_for_versions.get(v.run_id)
                    self._signature(lm.artifact_uri if lm else mlmodel_location(
                        v.source, run.artifact_uri if run else None), executor)

        if not models:
            self.observer.warning("Empty registry", "0 registered models found in the model registry")
        for model in models:
            versions = versions_by_model[model.name]
            yield ModelGroupRecord(model, versions)
            latest = max((v.version_number for v in versions), default=None)
            for version in versions:
                run = runs_for_versions.get(version.run_id)
                lm = logged.get(version.model_id or "")
                if signatures and lm is not None:
                    lm.signature_inputs = self._signature(lm.artifact_uri, executor).result()
                yield VersionRecord(
                    version, model, run, run_pending=bool(version.run_id) and run is None and plan is not None,
                    is_latest=version.version_number == latest, logged_model=lm,
                    signature_inputs=self.version_signature(version, lm, run) if signatures else None)

    def _crawl_logged_models(self, versions_by_model, included: list[Experiment], logged: dict,
                             executor) -> Iterator[LoggedModelRecord]:
        """Fill `logged` with the LoggedModels versions register; yield the unregistered ones
        of included experiments when include_logged_models is on."""
        wanted = {v.model_id for vs in versions_by_model.values() for v in vs if v.model_id}
        if not wanted and not self.settings.include_logged_models:
            return
        by_id = {e.experiment_id: e for e in included}
        for lm in self._logged_models(self._all_experiment_ids or list(by_id), executor):
            self.observer.seen("logged_models")
            if lm.model_id in wanted:
                logged[lm.model_id] = lm
            elif self.settings.include_logged_models and not lm.registered and lm.experiment_id in by_id:
                if self.settings.include_signatures:
                    lm.signature_inputs = self._signature(lm.artifact_uri, executor).result()
                yield LoggedModelRecord(lm, by_id[lm.experiment_id])
