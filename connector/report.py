"""What a run did: entities and aspects per type, warnings, failures, timings.

A report is redacted as it is built: every title and message goes through the run's Redactor
(the recipe's and the environment's secrets, `user:password@` in URLs) when it is added, so the
Report object itself, and wherever it goes (a report file, an Airflow XCom and task log, an
exception's text, DataHub's source report), never holds a secret a server echoed back."""
from __future__ import annotations

import re
import sys
import time
import uuid
from datetime import datetime, timezone
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, TextIO

from connector.secrets import Redactor

_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]+")

MAX_LISTED = 100  # warnings/failures kept verbatim; the rest are only counted


def unforeseen(exc: BaseException) -> str:
    """An unforeseen error in words: Python's own error names (KeyError, ...) say what happened;
    our classes' names are not shown."""
    text = str(exc)
    if type(exc).__module__ == "builtins":
        return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text or "an unforeseen error"


def new_run_id(pipeline_name: Optional[str]) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y_%m_%d-%H_%M_%S")
    return f"{pipeline_name or 'mlflow'}-{stamp}-{uuid.uuid4().hex[:6]}"


@dataclass
class Report:
    run_id: str = ""
    pipeline_name: str = ""
    source: str = ""
    sink: str = ""
    dry_run: bool = False
    started_at: float = field(default_factory=time.time)
    duration_sec: float = 0.0
    crawl_sec: float = 0.0          # crawling and mapping, with the sink taking proposals as they come
    final_delivery_sec: float = 0.0  # the sink finishing after the crawl (flush, last batches, rename)
    crawled: Counter = field(default_factory=Counter)
    filtered: Counter = field(default_factory=Counter)  # listed by MLflow, left out by a pattern
    entities: Counter = field(default_factory=Counter)
    aspects: dict = field(default_factory=dict)
    proposals: int = 0
    warnings: list = field(default_factory=list)
    warning_count: int = 0
    failures: list = field(default_factory=list)
    failure_count: int = 0
    failed_records: int = 0          # records MLflow sent that could not be read or mapped
    failed_record_names: list = field(default_factory=list)
    infos: list = field(default_factory=list)
    source_requests: int = 0
    source_retries: int = 0
    point_lookups: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    dead_letter_file: Optional[str] = None
    output: Optional[str] = None
    mode: str = "full"
    checkpoint_before: Optional[dict] = None
    checkpoint_after: Optional[dict] = None
    entities_removed: int = 0
    removals_emitted: bool = False
    resend_next_run: int = 0  # entities (and removals) the saved state has the next run send again
    _last_urn: str = ""
    # Redactor.from_recipe(recipe) of the run; by default the environment's secrets and URL credentials
    redactor: Optional[Redactor] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.redactor is None:
            self.redactor = Redactor.from_recipe(None)
        self.source = self.redact(self.source)

    def redact(self, text: str) -> str:
        assert self.redactor is not None
        return self.redactor.redact(text)

    # -- crawl observer ----------------------------------------------------
    def seen(self, kind: str, count: int = 1) -> None:
        self.crawled[kind] += count

    def filter_out(self, kind: str, count: int) -> None:
        if count:
            self.filtered[kind] += count

    def warning(self, title: str, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_LISTED:
            self.warnings.append({"title": self.redact(title), "message": self.redact(message)})

    def failure(self, title: str, message: str) -> None:
        self.failure_count += 1
        if len(self.failures) < MAX_LISTED:
            self.failures.append({"title": self.redact(title), "message": self.redact(message)})

    def info(self, title: str, message: str) -> None:
        self.infos.append({"title": self.redact(title), "message": self.redact(message)})

    def record_failed(self, what: str, problem: str, title: str = "Record not read") -> None:
        """One record failed (its fields are not MLflow's, or it could not be mapped); the others go on."""
        self.failed_records += 1
        if len(self.failed_record_names) < MAX_LISTED:
            self.failed_record_names.append(what)
        self.failure(title, f"{what}: {problem}")

    # -- proposals ---------------------------------------------------------
    def proposal(self, entity_type: str, entity_urn: str, aspect_name: str) -> None:
        """Count a proposal; an entity's aspects arrive together, so a new URN is a new entity."""
        self.proposals += 1
        per_type = self.aspects.get(entity_type)
        if per_type is None:  # (not setdefault: that would build a Counter for every proposal)
            per_type = self.aspects[entity_type] = Counter()
        per_type[aspect_name] += 1
        if entity_urn != self._last_urn:
            self.entities[entity_type] += 1
            self._last_urn = entity_urn

    def sink_result(self, result) -> None:
        """What the sink delivered and kept (a connector.sinks.base.SinkResult)."""
        self.delivered = result.delivered
        if result.error:
            self.dead_lettered = result.failed
            self.failure("Sink failed", result.error)
        if result.dead_letter_file or result.error:  # the sink's messages say why they were not delivered
            for message in result.messages:
                self.failure("Not delivered", message)
        if result.dead_letter_file:
            self.dead_lettered = result.failed
            self.dead_letter_file = result.dead_letter_file
            self.failure("Dead-lettered", f"{result.failed} proposal(s) not delivered are in "
                         f"{result.dead_letter_file}; re-send them with: mlflow-catalog send "
                         f"{result.dead_letter_file} -c RECIPE")
        elif not result.error:
            for message in result.messages:
                self.info("Sink", message)

    @property
    def ok(self) -> bool:
        return self.failure_count == 0

    def finish(self) -> None:
        self.duration_sec = round(time.time() - self.started_at, 3)

    def as_dict(self) -> dict:
        assert self.redactor is not None  # the messages are redacted already; paths and the source may not be
        return self.redactor.redact_tree(self._as_dict())

    def _as_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "pipeline_name": self.pipeline_name,
            "source": self.source,
            "sink": self.sink,
            "dry_run": self.dry_run,
            "status": "success" if self.ok else "failure",
            "mode": self.mode,
            "checkpoint_before": self.checkpoint_before,
            "checkpoint_after": self.checkpoint_after,
            "entities_emitted": sum(self.entities.values()),
            "entities_removed": self.entities_removed,
            "resend_next_run": self.resend_next_run,
            "started_at": int(self.started_at * 1000),
            "duration_sec": self.duration_sec,
            "durations": {"total_sec": self.duration_sec, "crawl_sec": self.crawl_sec,
                          "final_delivery_sec": self.final_delivery_sec},
            "crawled": dict(sorted(self.crawled.items())),
            "filtered": dict(sorted(self.filtered.items())),
            "entities": dict(sorted(self.entities.items())),
            "aspects": {t: dict(sorted(c.items())) for t, c in sorted(self.aspects.items())},
            "proposals": self.proposals,
            "delivered": self.delivered,
            "dead_lettered": self.dead_lettered,
            "dead_letter_file": self.dead_letter_file,
            "output": self.output,
            "source_requests": self.source_requests,
            "source_retries": self.source_retries,
            "point_lookups": self.point_lookups,
            "warning_count": self.warning_count,
            "warnings": self.warnings,
            "failure_count": self.failure_count,
            "failures": self.failures,
            "failed_records": self.failed_records,
            "failed_record_names": self.failed_record_names,
            "infos": self.infos,
        }

    def _filtered_line(self) -> str:
        if not self.filtered:
            return ""
        counts = ", ".join(f"{k}={v}" for k, v in sorted(self.filtered.items()))
        return f"filtered:   {counts} (left out by model_pattern / experiment_pattern)\n"

    def render(self, out: TextIO = sys.stdout) -> None:
        def w(text: str) -> None:
            out.write(self.redact(text))

        w(f"\n=== MLflow ingestion report ({'dry run' if self.dry_run else self.sink}) ===\n")
        w(f"run id:     {self.run_id}\nsource:     {self.source}\nmode:       {self.mode}\n")
        w(f"duration:   {self.duration_sec:.2f} s, {self.source_requests} MLflow requests "
          f"({self.source_retries} retries, {self.point_lookups} point look-ups)\n")
        w("crawled:    " + (", ".join(f"{k}={v}" for k, v in sorted(self.crawled.items())) or "nothing") + "\n")
        w(self._filtered_line())
        w(f"proposals:  {self.proposals} ({self.delivered} delivered"
          + (f", {self.dead_lettered} dead-lettered" if self.dead_lettered else "") + ")\n")
        if self.failed_records:
            w(self._failed_line())
        w(self._outcome_lines())
        w("entities and aspects:\n")
        for entity_type, count in sorted(self.entities.items()):
            aspects = ", ".join(f"{a}={n}" for a, n in sorted(self.aspects[entity_type].items()))
            w(f"  {entity_type:<22} {count:>7}   {aspects}\n")
        for item in self.infos:
            w(f"note:       {item['title']}: {_one_line(item['message'])}\n")
        for title, items, total in (("warnings", self.warnings, self.warning_count),
                                    ("failures", self.failures, self.failure_count)):
            w(f"{title}: {total}\n")
            for item in items:
                w(f"  - {item['title']}: {_one_line(item['message'])}\n")
        w(f"status:     {'SUCCESS' if self.ok else 'FAILURE'}\n")

    def _outcome_lines(self) -> str:
        lines = []
        if self.output:
            lines.append(f"output:     {self.output}\n")
        if self.entities_removed:
            lines.append(f"removed:    {self.entities_removed} entities gone from MLflow (status removed)\n")
        if self.checkpoint_after:
            lines.append(f"checkpoint: runs started until {self.checkpoint_after['runs_started_until']} saved\n")
        if self.resend_next_run:
            lines.append(f"re-send:    {self.resend_next_run} entities not surely in the catalog: "
                         "the next run sends them again\n")
        return "".join(lines)

    def _failed_line(self) -> str:
        more = f" and {self.failed_records - 10} more" if self.failed_records > 10 else ""
        return (f"failed:     {self.failed_records} record(s) not delivered: "
                f"{', '.join(self.failed_record_names[:10])}{more}\n")


class Progress:
    """Prints crawl progress to stderr every `interval` seconds."""

    def __init__(self, report: Report, interval: float = 5.0, stream: TextIO = sys.stderr):
        self.report = report
        self.interval = interval
        self.stream = stream
        self._next = time.monotonic() + interval

    def tick(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval
        seen = ", ".join(f"{k}={v}" for k, v in sorted(self.report.crawled.items()))
        self.stream.write(f"[progress] {seen}; proposals={self.report.proposals}\n")
        self.stream.flush()


def _one_line(message: str) -> str:
    """A server's message may hold newlines or terminal escapes: one line each in the printed report."""
    return _CONTROL_CHARACTERS.sub(" ", str(message)).strip()
