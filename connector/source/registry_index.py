"""The registry as one immutable index: registered models, their versions (with the aliases the
model holds merged in), and the versions each run produced."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Optional

from connector.source.backend import Backend
from connector.source.mlflow_objects import Experiment, ModelVersion, RegisteredModel
from connector.source.errors import MlflowApiError
from connector.source.paging import Listing, paged
from connector.source.crawl_records import CrawlObserver, NameFilter, parsed

EXPERIMENTS_PAGE = 50000      # server maximum
REGISTERED_MODELS_PAGE = 1000  # server maximum
MODEL_VERSIONS_PAGE = 10000


@dataclass(frozen=True)
class RegistryIndex:
    models: tuple[RegisteredModel, ...]                   # sorted by name
    versions_by_model: dict[str, tuple[ModelVersion, ...]]  # sorted by version number
    versions_by_run: dict[str, tuple[ModelVersion, ...]]

    @property
    def version_count(self) -> int:
        return sum(len(v) for v in self.versions_by_model.values())

    def all_versions(self):
        for model in self.models:
            for version in self.versions_by_model[model.name]:
                yield model, version

    def latest_version_number(self, name: str) -> Optional[int]:
        return max((v.version_number for v in self.versions_by_model[name]), default=None)

    @classmethod
    def build(cls, models: list[RegisteredModel], by_model: dict[str, list[ModelVersion]]) -> "RegistryIndex":
        complete: dict[str, tuple[ModelVersion, ...]] = {}
        by_run: dict[str, list[ModelVersion]] = {}
        for model in models:
            aliases_by_version: dict[str, list[str]] = {}
            for alias, version in model.aliases.items():
                aliases_by_version.setdefault(version, []).append(alias)
            versions = sorted((replace(v, aliases=sorted(set(v.aliases) | set(aliases_by_version.get(v.version, []))))
                               for v in by_model[model.name]), key=lambda v: (v.version_number, v.version))
            complete[model.name] = tuple(versions)
            for v in versions:
                if v.run_id:
                    by_run.setdefault(v.run_id, []).append(v)
        return cls(tuple(models), complete, {k: tuple(v) for k, v in by_run.items()})


@dataclass(frozen=True)
class MlflowListing:
    """What a crawl lists whole before anything else: every experiment and the registry."""
    experiments: tuple[Experiment, ...]
    registry: RegistryIndex


def _quote_filter_value(value: str) -> str:
    return f'"{value}"' if "'" in value else f"'{value}'"


class RegistryReader:
    def __init__(self, backend: Backend, models: NameFilter, observer: CrawlObserver):
        self.backend = backend
        self.filter = models
        self.observer = observer

    def registered_models(self) -> list[RegisteredModel]:
        listing = Listing("registered-models/search",
                          lambda t: self.backend.search_registered_models(REGISTERED_MODELS_PAGE, t))
        # a server that does not hide prompts from this listing: they are crawled as prompts, not models
        listed = [m for m in parsed(paged(listing), RegisteredModel.from_json, self.observer) if not m.is_prompt]
        models = [m for m in listed if self.filter.allows(m.name)]
        self.observer.filter_out("registered_models", len(listed) - len(models))
        return sorted(models, key=lambda m: m.name)

    def all_versions(self) -> Optional[list[ModelVersion]]:
        """Every version in one paged listing; None when the registry refuses that."""
        listing = Listing("model-versions/search",
                          lambda t: self.backend.search_model_versions("", MODEL_VERSIONS_PAGE, t))
        try:
            return list(parsed(paged(listing), ModelVersion.from_json, self.observer))
        except MlflowApiError as exc:
            # Unity Catalog (and some proxies) refuse a listing without a model name.
            self.observer.info("Per-model version listing",
                               f"the registry refused to list all versions at once ({exc.error_code or exc}); "
                               "listing them model by model")
            return None

    def _versions_of(self, name: str) -> list[ModelVersion]:
        flt = f"name = {_quote_filter_value(name)}"
        listing = Listing(f"model-versions/search ({flt})",
                          lambda t: self.backend.search_model_versions(flt, MODEL_VERSIONS_PAGE, t))
        return list(parsed(paged(listing), ModelVersion.from_json, self.observer))

    def index(self, models: list[RegisteredModel], listed: Optional[list[ModelVersion]]) -> RegistryIndex:
        by_model: dict[str, list[ModelVersion]] = {m.name: [] for m in models}
        if listed is not None:
            for version in listed:
                if version.name in by_model:
                    by_model[version.name].append(version)
        else:
            for name in list(by_model):
                try:
                    by_model[name] = self._versions_of(name)
                except MlflowApiError as exc:  # that model only: the others are delivered
                    del by_model[name]
                    self.observer.failure("Model versions not listed", f"registered model {name!r} left out of "
                                          f"this run (its group and versions): {exc}")
        return RegistryIndex.build([m for m in models if m.name in by_model], by_model)


def experiments(backend: Backend, observer: CrawlObserver) -> list[Experiment]:
    listing = Listing("experiments/search", lambda t: backend.search_experiments("ALL", EXPERIMENTS_PAGE, t))
    return list(parsed(paged(listing), Experiment.from_json, observer))


def list_mlflow(backend: Backend, models: NameFilter, include_experiments: bool, observer: CrawlObserver,
                 executor: Optional[ThreadPoolExecutor]) -> MlflowListing:
    """Experiments and the registry; with an executor the registry's two listings run beside the
    experiment listing."""
    reader = RegistryReader(backend, models, observer)
    if executor is None:  # one request at a time
        found = reader.registered_models()
        index = reader.index(found, reader.all_versions() if found else [])
        listed = experiments(backend, observer) if include_experiments else []
    else:
        models_future, versions_future = executor.submit(reader.registered_models), executor.submit(reader.all_versions)
        listed = experiments(backend, observer) if include_experiments else []
        found = models_future.result()
        index = reader.index(found, versions_future.result() if found else [])
    return MlflowListing(tuple(listed), index)
