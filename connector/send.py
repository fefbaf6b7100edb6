"""`mlflow-catalog send`: re-send a file of proposals (a dead-letter file, or a file sink's output)
through the recipe's sink. Nothing read is lost: what cannot be sent is dead-lettered."""
from __future__ import annotations

import json
import time
from typing import Optional

from connector.mapping.common import Mcp
from connector.config.recipe import Recipe
from connector.report import Report, new_run_id
from connector.secrets import Redactor
from connector.mapping.links import ForeignLinks
from connector.config.settings import build_sink, mapping_context
from connector.stopping import StopToken
from connector.sinks.base import SinkError
from connector.sinks.file import read_proposals
from connector.sinks.rest import RestSink


def _proposal_from_record(record: dict) -> tuple[Mcp, Optional[dict]]:
    aspect = record.get("aspect") or {}
    value = aspect["json"] if "json" in aspect else json.loads(aspect["value"])
    if not isinstance(value, dict):
        raise ValueError("aspect is not an object")
    return Mcp(record["entityUrn"], record["aspectName"], value), record.get("systemMetadata")


def _read(filename: str, records: Optional[list]) -> list[tuple[Mcp, Optional[dict]]]:
    pairs = []
    for index, record in enumerate(read_proposals(filename) if records is None else records):
        try:
            pairs.append(_proposal_from_record(record))
        except (KeyError, TypeError, ValueError) as exc:
            raise SinkError(f"record {index} is not a proposal ({type(exc).__name__}: {exc})") from None
    return pairs


def run_send(recipe: Recipe, filename: str, records: Optional[list] = None, *,
             stop: Optional[StopToken] = None) -> Report:
    """`records`: the file's records, already read and checked (the CLI does, to exit 2 on a bad file);
    `stop`: this run's stop token (SIGTERM in the CLI)."""
    redactor = Redactor.from_recipe(recipe)
    report = Report(pipeline_name=recipe.pipeline_name or "", run_id=new_run_id(recipe.pipeline_name),
                    source=filename, redactor=redactor)
    try:
        pairs = _read(filename, records)
    except (OSError, ValueError, SinkError) as exc:
        report.failure("Cannot read proposals", f"{filename}: {exc}")
        report.finish()
        return report
    sink = build_sink(recipe.sink, redactor=redactor, stop=stop)
    report.sink = sink.name
    if isinstance(sink, RestSink):  # a crawl's file composes with SDK links as the crawl itself would
        ctx = mapping_context(recipe.source.config)
        sink.foreign_links = ForeignLinks(ctx.deployment_rules, ctx.env, ctx.platform_instance)
    sink.resending(filename)
    sent = 0
    try:
        for proposal, system_metadata in pairs:
            system_metadata = system_metadata or {"lastObserved": int(time.time() * 1000), "runId": report.run_id}
            report.proposal(proposal.entity_type, proposal.entity_urn, proposal.aspect_name)
            sent += 1
            sink.write(proposal, system_metadata)
    except SinkError as exc:
        report.failure("Sink failed", str(exc))
        for proposal, system_metadata in pairs[sent:]:  # nothing read is lost: the rest is dead-lettered too
            report.proposal(proposal.entity_type, proposal.entity_urn, proposal.aspect_name)
            sink.dead_letter_unsent(proposal, system_metadata or {}, f"not sent: {exc}")
        result = sink.abort()
    else:
        result = sink.commit()
        report.output = sink.output
    report.sink_result(result)
    report.finish()
    return report
