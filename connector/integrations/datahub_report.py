"""Our run report's figures inside DataHub's source report (what `datahub ingest` prints and the
UI's ingestion run page shows). Every warning, failure and note added to it is redacted with the
run's Redactor, whoever adds it (our report, the plugin, DataHub's sink problems)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

from datahub.ingestion.api.source import SourceReport

from connector.report import Report
from connector.secrets import Redactor


@dataclass
class MlflowCatalogSourceReport(SourceReport):
    mlflow_server: str = ""
    connector_run_id: str = ""
    mode: str = ""
    crawled: Dict[str, int] = field(default_factory=dict)
    filtered: Dict[str, int] = field(default_factory=dict)  # listed, left out by model/experiment_pattern
    mlflow_requests: int = 0
    mlflow_retries: int = 0
    point_lookups: int = 0
    proposals: int = 0
    proposals_handed_to_datahub: int = 0
    entities_emitted: Dict[str, int] = field(default_factory=dict)
    entities_removed: int = 0
    crawl_sec: float = 0.0
    state_file: Optional[str] = None
    checkpoint_before: Optional[dict] = None
    checkpoint_saved: Optional[dict] = None  # set in DataHub's commit step, once its sink delivered the run
    checkpoint_pending: Optional[dict] = None  # its sink delivers after the commit step: the next run confirms it
    checkpoint_confirmed: Optional[dict] = None  # the previous run's pending checkpoint, saved as delivered
    _redactor: Redactor = field(default_factory=Redactor, repr=False)  # not in the report (leading _)

    def use_redactor(self, redactor: Redactor) -> None:
        self._redactor = redactor

    def _redacted(self, message, context, title, exc):
        """An exception becomes redacted text in the context (its stack trace is not kept: it may hold
        what a server echoed)."""
        if exc is not None:
            context = f"{context} {type(exc).__name__}: {exc}" if context else f"{type(exc).__name__}: {exc}"
        redact = self._redactor.redact
        return redact(message), redact(context) if context else context, redact(title) if title else title

    def failure(self, message, context=None, title=None, exc=None, log=True, log_category=None) -> None:
        message, context, title = self._redacted(message, context, title, exc)
        super().failure(message, context=context, title=title, log=log, log_category=log_category)

    def warning(self, message, context=None, title=None, exc=None, log=True, log_category=None) -> None:
        message, context, title = self._redacted(message, context, title, exc)
        super().warning(message, context=context, title=title, log=log, log_category=log_category)

    def info(self, message, context=None, title=None, exc=None, log=True, log_category=None) -> None:
        message, context, title = self._redacted(message, context, title, exc)
        super().info(message, context=context, title=title, log=log, log_category=log_category)

    def report_workunit(self, wu) -> None:
        # Only counted: DataHub's per-aspect bookkeeping (a sqlite-backed table per work unit) would
        # cost more than our crawl; the aspects per entity type come from our report in absorb().
        self.events_produced += 1

    def absorb(self, ours: Report) -> None:
        """Copy our report in: figures, then every warning, failure and note, titled as ours are."""
        self.mlflow_server = self._redactor.redact(ours.source)
        self.connector_run_id = ours.run_id
        self.mode = ours.mode
        self.crawled = dict(sorted(ours.crawled.items()))
        self.filtered = dict(sorted(ours.filtered.items()))
        self.mlflow_requests = ours.source_requests
        self.mlflow_retries = ours.source_retries
        self.point_lookups = ours.point_lookups
        self.proposals = ours.proposals
        self.proposals_handed_to_datahub = ours.delivered
        self.entities_emitted = dict(sorted(ours.entities.items()))
        self.aspects = {entity_type: dict(sorted(counts.items()))
                        for entity_type, counts in sorted(ours.aspects.items())}
        self.entities_removed = ours.entities_removed
        self.crawl_sec = ours.crawl_sec
        self.checkpoint_before = ours.checkpoint_before
        for item in ours.infos:
            self.info(item["title"], context=item["message"], title=item["title"], log=False)
        for item in ours.warnings:
            self.warning(item["title"], context=item["message"], title=item["title"])
        if ours.warning_count > len(ours.warnings):
            self.warning("More warnings", context=f"{ours.warning_count - len(ours.warnings)} more not listed")
        for item in ours.failures:
            self.failure(item["title"], context=item["message"], title=item["title"])
        if ours.failure_count > len(ours.failures):
            self.failure("More failures", context=f"{ours.failure_count - len(ours.failures)} more not listed")
