"""`mlflow-catalog lineage`: where the proposals come from (an output file, or a live crawl of a
recipe that delivers nothing and touches no state), and where the page goes."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from connector.atomic import write_atomically
from connector.lineage.graph import LineageGraph, build_graph
from connector.lineage.page import render_page
from connector.mapping.common import Mcp
from connector.report import Report
from connector.sinks.base import SinkResult
from connector.sinks.dry_run import DryRunSink
from connector.sinks.file import file_record


class LineageError(Exception):
    """The proposals could not be had; the message says why."""


class CollectingSink(DryRunSink):
    """A dry run that keeps every proposal in memory, in the file sink's record form."""

    name = "lineage page"

    def __init__(self) -> None:
        self.records: list[dict] = []

    def write(self, proposal: Mcp, system_metadata: dict) -> None:
        self.records.append(file_record(proposal, system_metadata))

    def commit(self) -> SinkResult:
        return SinkResult(delivered=len(self.records))


def records_of_file(path: str) -> list[dict]:
    from connector.sinks.proposal_file import ProposalFileError, read_proposal_file

    try:
        return read_proposal_file(path)
    except OSError as exc:
        raise LineageError(f"cannot read {path}: {exc.strerror}") from None
    except ProposalFileError as exc:
        raise LineageError(str(exc).removesuffix("; nothing was sent")) from None


def records_of_crawl(recipe) -> tuple[list[dict], Report]:
    """A full crawl of the recipe's MLflow as a dry run: nothing delivered, no state read or saved."""
    from connector.pipeline import run_ingest

    recipe.source.config.incremental = False
    recipe.state = None  # neither read nor saved: a picture is no run of the pipeline
    sink = CollectingSink()
    report = run_ingest(recipe, dry_run=True, sink=sink)
    return sink.records, report


def refuse_overwriting(output: str, *inputs: Optional[str]) -> None:
    """The page never replaces what it is drawn from (the output file, the recipe)."""
    target = Path(output).resolve()
    for given in filter(None, inputs):
        if Path(given).resolve() == target:
            raise LineageError(f"-o {output} is {given}, what the page is drawn from: write the page elsewhere")


def write_page(records: list[dict], output: str, title: str) -> LineageGraph:
    graph = build_graph(records)
    try:
        write_atomically(output, render_page(graph, title))
    except OSError as exc:
        raise LineageError(f"cannot write {output}: {exc.strerror or exc}") from None
    return graph
