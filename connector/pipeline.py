"""One ingestion run: crawl MLflow -> map each record -> hand proposals to the sink."""
from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timezone
from typing import Iterator, Optional

from connector.mapping.common import MappingContext, Mcp
from connector.mapping.datasets import dataset_urn_for, map_dataset
from connector.mapping.deployments import DeploymentRule, deployments_for_version, map_deployment
from connector.mapping.experiments import map_experiment, map_run
from connector.mapping.registry import map_model_group, map_model_version, map_stage_tags
from connector.recipe import Recipe
from connector.report import Progress, Report
from connector.sinks import build_sink
from connector.sinks.base import SinkError, SinkResult
from connector.sinks.file import read_proposals
from connector.source.connect import external_base_url, open_backend
from connector.source.crawler import (
    CrawlSettings, ExperimentRecord, MlflowCrawler, ModelGroupRecord, RunRecord, VersionRecord,
)
from connector.source.errors import SourceError
from connector.source.http_backend import redact_url

log = logging.getLogger(__name__)


def new_run_id(pipeline_name: Optional[str]) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y_%m_%d-%H_%M_%S")
    return f"{pipeline_name or 'mlflow'}-{stamp}-{uuid.uuid4().hex[:6]}"


def mapping_context(recipe: Recipe) -> MappingContext:
    config = recipe.source.config
    return MappingContext(
        env=config.env,
        platform_instance=config.platform_instance,
        model_name_separator=config.model_name_separator,
        base_external_url=external_base_url(config),
        dataset_platform_mapping={k.lower(): v for k, v in config.dataset_platform_mapping.items()},
        deployment_rules=tuple(
            DeploymentRule(platform=r.platform, name_template=r.name_template, alias=r.alias,
                           tag_key=r.tag.key if r.tag else None, tag_value=r.tag.value if r.tag else None,
                           env=r.env, status=r.status, description=r.description)
            for r in config.deployments),
    )


def crawl_settings(recipe: Recipe) -> CrawlSettings:
    config = recipe.source.config
    return CrawlSettings(
        include_experiments=config.include_experiments,
        include_runs=config.include_runs,
        include_deleted=config.include_deleted,
        runs_page_size=config.runs_page_size,
        max_workers=config.max_workers,
        experiment_allowed=config.experiment_pattern.allows,
        model_allowed=config.model_pattern.allows,
    )


def proposals_for(ctx: MappingContext, record, seen_urns: set) -> Iterator[Mcp]:
    """The proposals of one crawled record; `seen_urns` keeps shared entities (datasets,
    deployments) to one emission per run."""
    if isinstance(record, ExperimentRecord):
        yield from map_experiment(ctx, record.experiment)
    elif isinstance(record, RunRecord):
        for dataset_input in record.run.dataset_inputs:
            urn = dataset_urn_for(ctx, dataset_input.dataset)
            if urn not in seen_urns:
                seen_urns.add(urn)
                yield from map_dataset(ctx, dataset_input)
        yield from map_run(ctx, record.run, record.experiment, record.produced_versions)
    elif isinstance(record, ModelGroupRecord):
        yield from map_model_group(ctx, record.model, record.versions)
    elif isinstance(record, VersionRecord):
        yield from map_model_version(ctx, record.version, record.model, record.run)
        for deployment in deployments_for_version(ctx.deployment_rules, record.version, ctx.env):
            if deployment.urn not in seen_urns:
                seen_urns.add(deployment.urn)
                yield from map_deployment(deployment.urn, deployment.platform, deployment.properties)


def _describe(record) -> str:
    if isinstance(record, ExperimentRecord):
        return f"experiment {record.experiment.name!r}"
    if isinstance(record, RunRecord):
        return f"run {record.run.run_id}"
    if isinstance(record, ModelGroupRecord):
        return f"registered model {record.model.name!r}"
    return f"model version {record.version.name!r} v{record.version.version}"


class _NullSink:
    name = "dry-run"

    def write(self, proposal, system_metadata):
        pass

    def commit(self):
        return SinkResult()

    def abort(self):
        return SinkResult()


def run_ingest(recipe: Recipe, *, dry_run: bool = False, preview: Optional[int] = None,
               progress_interval: float = 5.0) -> Report:
    config = recipe.source.config
    report = Report(pipeline_name=recipe.pipeline_name or "", dry_run=dry_run,
                    run_id=new_run_id(recipe.pipeline_name))
    report.source = redact_url(config.resolved_tracking_uri())
    sink = _NullSink() if dry_run else build_sink(recipe.sink)
    report.sink = sink.name
    progress = Progress(report, progress_interval)
    ctx = mapping_context(recipe)
    backend = None
    result: SinkResult
    try:
        backend = open_backend(config)
        crawler = MlflowCrawler(backend, crawl_settings(recipe), report)
        seen_datasets: set[str] = set()

        def all_proposals() -> Iterator[Mcp]:
            yield from map_stage_tags()
            for record in crawler.crawl():
                try:
                    batch = list(proposals_for(ctx, record, seen_datasets))
                except Exception as exc:  # one bad record must not sink the run
                    report.failure("Mapping failed", f"{_describe(record)}: {type(exc).__name__}: {exc}")
                    continue
                yield from batch
                progress.tick()

        for count, proposal in enumerate(all_proposals(), start=1):
            system_metadata = {"lastObserved": int(time.time() * 1000), "runId": report.run_id}
            report.proposal(proposal.entity_type, proposal.entity_urn, proposal.aspect_name)
            sink.write(proposal, system_metadata)
            if preview and count >= preview:
                report.info("Preview", f"stopped after {preview} proposals (--preview)")
                break
        report.point_lookups = crawler.point_lookups
    except (SourceError, SinkError) as exc:
        report.failure(type(exc).__name__, str(exc))
        result = sink.abort()
    except Exception as exc:  # a bug or an unforeseen answer: report it, lose nothing
        log.debug("ingest failed", exc_info=True)
        report.failure("Unexpected error", f"{type(exc).__name__}: {exc}")
        result = sink.abort()
    else:
        try:
            result = sink.commit()
        except (SinkError, OSError) as exc:
            report.failure("Sink failed", str(exc))
            result = sink.abort()
        else:
            if not dry_run and hasattr(sink, "path"):
                report.output = str(sink.path)
    finally:
        if backend is not None:
            report.source_requests = backend.requests_made
            report.source_retries = getattr(backend, "retries_made", 0)
            backend.close()
    record_sink_result(report, result)
    report.finish()
    return report


def record_sink_result(report: Report, result: SinkResult) -> None:
    report.delivered = result.delivered
    if result.dead_letter_file:
        report.dead_lettered = result.failed
        report.dead_letter_file = result.dead_letter_file
        for message in result.messages:
            report.failure("Not delivered", message)
        report.failure("Dead-lettered", f"{result.failed} proposal(s) not delivered are in "
                       f"{result.dead_letter_file}; re-send them with: mlflow-catalog send "
                       f"{result.dead_letter_file} -c RECIPE")
    else:
        for message in result.messages:
            report.info("Sink", message)


def _proposal_from_record(record: dict) -> tuple[Mcp, Optional[dict]]:
    aspect = record.get("aspect") or {}
    value = aspect["json"] if "json" in aspect else json.loads(aspect["value"])
    return Mcp(record["entityUrn"], record["aspectName"], value), record.get("systemMetadata")


def run_send(recipe: Recipe, filename: str) -> Report:
    """Re-send a file of proposals (a dead-letter file, or a file sink's output) through the recipe's sink."""
    report = Report(pipeline_name=recipe.pipeline_name or "", run_id=new_run_id(recipe.pipeline_name),
                    source=filename)
    try:
        records = read_proposals(filename)
    except (OSError, ValueError, SinkError) as exc:
        report.failure("Cannot read proposals", f"{filename}: {exc}")
        report.finish()
        return report
    sink = build_sink(recipe.sink)
    report.sink = sink.name
    try:
        for record in records:
            proposal, system_metadata = _proposal_from_record(record)
            system_metadata = system_metadata or {"lastObserved": int(time.time() * 1000),
                                                  "runId": report.run_id}
            report.proposal(proposal.entity_type, proposal.entity_urn, proposal.aspect_name)
            sink.write(proposal, system_metadata)
    except SinkError as exc:
        report.failure("SinkError", str(exc))
        result = sink.abort()
    else:
        result = sink.commit()
        if hasattr(sink, "path"):
            report.output = str(sink.path)
    record_sink_result(report, result)
    report.finish()
    return report
