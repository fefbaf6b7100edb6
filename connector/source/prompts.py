"""MLflow 3's Prompt Registry, read in bulk: every prompt in one paged listing and every prompt
version in another, whatever the number of prompts (no request per prompt).

MLflow keeps a prompt as a registered model tagged `mlflow.prompt.is_prompt = true` (its versions
carry the tag too). The SQL store leaves prompts out of a plain `registered-models/search` and
`model-versions/search`; a filter on that tag asks for them, and for them alone.
"""
from __future__ import annotations

from typing import Iterator

from connector.source.backend import Backend
from connector.source.crawl_records import CrawlObserver, NameFilter, PromptRecord, parsed
from connector.source.errors import MlflowApiError
from connector.source.mlflow_objects import PROMPT_TAG, ModelVersion, RegisteredModel
from connector.source.paging import Listing, paged
from connector.source.registry_index import MODEL_VERSIONS_PAGE, REGISTERED_MODELS_PAGE, RegistryIndex

PROMPTS_FILTER = f"tags.`{PROMPT_TAG}` = 'true'"
_NO_PROMPTS = ("ENDPOINT_NOT_FOUND", "NOT_IMPLEMENTED", "INVALID_PARAMETER_VALUE", "BAD_REQUEST")


class PromptReader:
    def __init__(self, backend: Backend, models: NameFilter, observer: CrawlObserver):
        self.backend = backend
        self.filter = models  # model_pattern: prompts share the registry's names
        self.observer = observer
        self.refused = False  # the registry refused to list prompts: none known, none gone

    def _prompts(self) -> list[RegisteredModel]:
        listing = Listing("registered-models/search (prompts)", lambda t: self.backend.search_registered_models(
            REGISTERED_MODELS_PAGE, t, PROMPTS_FILTER))
        # a registry that ignores the filter answers plain models too: only tagged ones are prompts
        listed = [m for m in parsed(paged(listing), RegisteredModel.from_json, self.observer) if m.is_prompt]
        prompts = [m for m in listed if self.filter.allows(m.name)]
        self.observer.filter_out("prompts", len(listed) - len(prompts))
        return sorted(prompts, key=lambda m: m.name)

    def _versions(self) -> list[ModelVersion]:
        listing = Listing("model-versions/search (prompts)", lambda t: self.backend.search_model_versions(
            PROMPTS_FILTER, MODEL_VERSIONS_PAGE, t))
        return list(parsed(paged(listing), ModelVersion.from_json, self.observer))

    def index(self) -> RegistryIndex:
        """Every prompt and its versions; an empty index from a registry without prompts."""
        try:
            prompts = self._prompts()
            versions = self._versions() if prompts else []
        except MlflowApiError as exc:
            # a registry that has no prompts and refuses the filter (Unity Catalog, an old server);
            # any other error stops the run: an empty listing would remove every prompt
            if exc.status != 404 and exc.error_code not in _NO_PROMPTS:
                raise
            self.refused = True
            self.observer.warning("Prompts not listed",
                                  f"the registry refused to list prompts ({exc.error_code or exc})")
            return RegistryIndex.build([], {})
        by_prompt: dict[str, list[ModelVersion]] = {p.name: [] for p in prompts}
        for version in versions:
            if version.name in by_prompt:
                by_prompt[version.name].append(version)
        return RegistryIndex.build(prompts, by_prompt)


def prompt_records(index: RegistryIndex, observer: CrawlObserver) -> Iterator[PromptRecord]:
    observer.seen("prompts", len(index.models))
    observer.seen("prompt_versions", index.version_count)
    for prompt in index.models:
        yield PromptRecord(prompt, index.versions_by_model[prompt.name])
