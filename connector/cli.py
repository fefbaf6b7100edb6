"""`mlflow-catalog`: ingest MLflow into the catalog, or check that a recipe can."""
from __future__ import annotations

import functools
import io
import json
import os
import re
import signal
import sys
from pathlib import Path
from typing import NoReturn, Optional

import click

from connector.stopping import Stopped, StopToken
from connector.source.store_backend import quiet_mlflow_telemetry
from connector.config.recipe import RecipeError, load_recipe
from connector.secrets import Redactor

EXIT_OK, EXIT_FAILURES, EXIT_BAD_RECIPE, EXIT_LOCKED = 0, 1, 2, 3
_redactor = Redactor.from_recipe(None)  # the environment's secrets; the recipe's once it is loaded
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]+")
_report_file: Optional[str] = None  # --report-file of the command running: written on every failure


def _say(text: str, err: bool = False) -> None:
    """Everything the CLI prints goes through here: no secret leaves the process."""
    click.echo(_redactor.redact(text), err=err)


def _say_error(message: str) -> None:
    """One `error:` line per problem: a server's message may hold newlines or terminal escapes."""
    _say("error: " + _CONTROL_CHARACTERS.sub(" ", message).strip(), err=True)


def _bad_input(message: str) -> NoReturn:
    """A recipe or file given by the user that cannot be used: exit 2."""
    _say_error(message)
    _failure_report("Bad input", message)
    sys.exit(EXIT_BAD_RECIPE)


def _failure_report(title: str, message: str, pipeline: str = "") -> None:
    """A run that ends before it has a report of its own still leaves its report file."""
    if _report_file:
        from connector.report import Report

        report = Report(pipeline_name=pipeline)
        report.failure(title, message)
        report.finish()
        _write_report(report, _report_file)


def _write_report(report, report_file: str) -> bool:
    try:
        Path(report_file).parent.mkdir(parents=True, exist_ok=True)
        Path(report_file).write_text(json.dumps(_redactor.redact_tree(report.as_dict()), indent=2) + "\n",
                                     encoding="utf-8")
    except OSError as exc:
        _say(f"error: report file {report_file} cannot be written: {exc.strerror}", err=True)
        return False
    return True


def _load(path: str, runnable: bool = True):
    """The recipe, or exit 2. `runnable`: also what `check` and `ingest` need of the source."""
    global _redactor
    from connector.config.preflight import check_runnable, exposure_warnings

    try:
        recipe = load_recipe(path)
        _redactor = Redactor.from_recipe(recipe)
        if runnable:
            check_runnable(recipe, path)
    except RecipeError as exc:
        _bad_input(str(exc))
    return recipe, exposure_warnings(recipe)


def _guarded(command):
    """A bug or an unforeseen failure: one line naming it, exit 1, no traceback (unless
    MLFLOW_CATALOG_DEBUG is set)."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except Exception as exc:
            if os.environ.get("MLFLOW_CATALOG_DEBUG"):
                raise
            from connector.report import unforeseen

            message = f"{unforeseen(exc)} (set MLFLOW_CATALOG_DEBUG=1 for the traceback)"
            _say_error(f"unexpected error: {message}")
            _failure_report("Unexpected error", message)
            sys.exit(EXIT_FAILURES)
    return run


# The stop token of this process's one run (a CLI process runs one command).
_run_stop = StopToken()


def _stop_on_signals() -> None:
    """SIGTERM (a cron timeout, `kill`) and Ctrl-C stop the run within seconds, in every phase: the
    first signal interrupts what the main thread waits for and tells every other wait of the run
    (its stop token) to end; the run then dead-letters what was not delivered, prints and writes
    its report, and exits 1."""
    def handler(signum, frame):
        first = not _run_stop.requested()
        reason = f"stopped by {signal.Signals(signum).name}"
        _run_stop.request(reason)
        if first:
            raise Stopped(reason)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@click.group()
@click.version_option(package_name="mlflow-catalog-connector")
def main() -> None:
    """Put what an MLflow tracking server and model registry hold into a data catalog."""
    quiet_mlflow_telemetry()  # our own process: before anything may load MLflow
    _stop_on_signals()


@main.command()
@click.option("-c", "--config", "recipe_path", required=True, type=click.Path(dir_okay=False),
              help="Recipe YAML.")
@click.option("--dry-run", is_flag=True, help="Crawl and map, write nothing.")
@click.option("--preview", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop after N proposals, printed to standard output (the recipe's sink is not touched).")
@click.option("--preview-file", type=click.Path(dir_okay=False), default=None,
              help="With --preview: write the proposals to this file instead of standard output.")
@click.option("--report-file", type=click.Path(dir_okay=False), default=None,
              help="Also write the report as JSON here.")
@click.option("--full", "force_full", is_flag=True,
              help="A full crawl even when the recipe says incremental (e.g. a nightly run).")
@click.option("--resume", is_flag=True,
              help="Go on with an interrupted full crawl from its last checkpoint (needs a state section).")
@click.option("--allow-mass-removal", is_flag=True,
              help="This run removes what MLflow no longer lists even when that looks like a broken listing "
                   "(every model gone, more than max_removal_ratio): a mass deletion a person confirmed.")
@_guarded
def ingest(recipe_path: str, dry_run: bool, preview, preview_file, report_file, force_full: bool,
           resume: bool, allow_mass_removal: bool) -> None:
    """Crawl MLflow and deliver every proposal to the recipe's sink."""
    global _report_file
    from connector.pipeline import run_ingest
    from connector.sinks.file import FileSink, StdoutSink
    from connector.state.lock import LockHeld

    _report_file = report_file

    recipe, warnings = _load(recipe_path)
    _apply_run_flags(recipe, force_full, resume, allow_mass_removal)
    _check_options(dry_run, preview, preview_file)
    sink = None
    if preview:  # never the recipe's output: a preview must not replace a complete file
        sink = FileSink(preview_file) if preview_file else StdoutSink(sys.stdout)
    try:
        report = run_ingest(recipe, dry_run=dry_run, preview=preview, resume=resume, sink=sink, stop=_run_stop)
    except RecipeError as exc:
        _bad_input(str(exc))
    except LockHeld as exc:
        message = f"pipeline {recipe.pipeline_name!r} is already running: {exc}; not starting a second run"
        _say(message, err=True)
        _failure_report("Already running", message, recipe.pipeline_name or "")
        sys.exit(EXIT_LOCKED)
    for warning in warnings:
        report.warning("Recipe", warning)
    _finish(report, report_file, sys.stderr if preview and not preview_file else sys.stdout)


def _apply_run_flags(recipe, force_full: bool, resume: bool, allow_mass_removal: bool) -> None:
    if force_full:
        recipe.source.config.incremental = False
    if resume and recipe.state is None:
        _bad_input("--resume needs a state section in the recipe (it keeps the progress of a full crawl)")
    if allow_mass_removal:
        if recipe.state is None:
            _bad_input("--allow-mass-removal needs a state section in the recipe (removals come from the state)")
        recipe.state.allow_mass_removal = True


def _check_options(dry_run: bool, preview, preview_file) -> None:
    if preview_file and not preview:
        _bad_input("--preview-file needs --preview N")
    if preview and dry_run:
        _bad_input("--preview and --dry-run: choose one (a preview prints proposals, a dry run writes none)")


def _finish(report, report_file, out=None) -> None:
    rendered = io.StringIO()
    report.render(rendered)
    (out or sys.stdout).write(_redactor.redact(rendered.getvalue()))
    if report_file and not _write_report(report, report_file):
        _exit(EXIT_FAILURES)
    for failure in report.failures[:5]:
        _say_error(f"{failure['title']}: {failure['message']}")
    _exit(EXIT_OK if report.ok else EXIT_FAILURES)


def _exit(code: int) -> None:
    if _run_stop.requested():  # worker threads may still sit in a socket read: do not wait for them
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


@main.command()
@click.argument("proposal_file", type=click.Path(dir_okay=False))
@click.option("-c", "--config", "recipe_path", required=True, type=click.Path(dir_okay=False),
              help="Recipe whose sink receives the proposals.")
@click.option("--report-file", type=click.Path(dir_okay=False), default=None,
              help="Also write the report as JSON here.")
@_guarded
def send(proposal_file: str, recipe_path: str, report_file) -> None:
    """Re-send PROPOSAL_FILE (a dead-letter file or any file sink output) through the recipe's sink."""
    global _report_file
    from connector.send import run_send

    _report_file = report_file
    from connector.sinks.proposal_file import ProposalFileError, read_proposal_file

    recipe, _ = _load(recipe_path, runnable=False)
    try:
        records = read_proposal_file(proposal_file)
    except OSError as exc:
        _bad_input(f"cannot read {proposal_file}: {exc.strerror}")
    except ProposalFileError as exc:
        _bad_input(str(exc))
    _finish(run_send(recipe, proposal_file, records, stop=_run_stop), report_file)


@main.command()
@click.option("-c", "--config", "recipe_path", required=True, type=click.Path(dir_okay=False),
              help="Recipe YAML.")
@_guarded
def check(recipe_path: str) -> None:
    """Check a recipe: valid, MLflow answers, the sink is reachable, the state is readable."""
    from connector.config.checks import run_checks

    recipe, warnings = _load(recipe_path)
    for warning in warnings:
        _say(f"[warn] recipe: {warning}")
    ok = True
    for name, passed, detail in run_checks(recipe):
        _say(f"[{'ok' if passed else 'FAIL'}] {name}: {detail}")
        ok = ok and passed
    sys.exit(EXIT_OK if ok else EXIT_FAILURES)


@main.command()
@click.argument("proposal_file", required=False, type=click.Path(dir_okay=False))
@click.option("-c", "--config", "recipe_path", default=None, type=click.Path(dir_okay=False),
              help="Crawl this recipe's MLflow instead of reading a file (delivers nothing, touches no state).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="The HTML page to write.")
@click.option("--title", default="MLflow lineage", show_default=True, help="The page's title.")
@_guarded
def lineage(proposal_file, recipe_path, output: str, title: str) -> None:
    """Draw the lineage of PROPOSAL_FILE (a file sink's output), or of a live crawl, as one offline HTML page."""
    from connector.lineage.command import (
        LineageError, records_of_crawl, records_of_file, refuse_overwriting, write_page,
    )

    if bool(proposal_file) == bool(recipe_path):
        _bad_input("lineage: give a proposal file or -c RECIPE (one of them)")
    try:
        refuse_overwriting(output, proposal_file, recipe_path)
        if recipe_path:
            recipe, _ = _load(recipe_path)
            records, report = records_of_crawl(recipe)
            if not report.ok:
                _finish(report, None)
        else:
            records = records_of_file(proposal_file)
        graph = write_page(records, output, title)
    except LineageError as exc:
        _bad_input(str(exc))
    _say(f"lineage of {len(graph.nodes)} entities and {len(graph.edges)} links written to {output}")


if __name__ == "__main__":  # pragma: no cover
    main()
