"""`check` tests what `ingest` will need (issue 19): folders it writes into that are really writable
(a file as parent, a read-only state folder, also for root), outputs that are not the state file or
the recipe, and an answer in bounded time from a state server that drips."""
from __future__ import annotations

import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.catalog_server import CatalogServer
from tests.fault_proxy import FaultProxy
from tests.unattended_kit import CLI, file_sink, ingest, rest_sink, write_recipe

pytestmark = pytest.mark.server


def _check(recipe: Path, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    proc = subprocess.run(CLI + ["check", "-c", str(recipe)], capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, time.monotonic() - started


@contextmanager
def _read_only(folder: Path):
    """A folder nobody can create files in, root included: immutable (chattr +i) when we are root
    (root ignores permission bits), else mode 0555."""
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    if not immutable:
        folder.chmod(0o555)
    try:
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


def test_a_file_sink_under_a_file_is_not_writable(seeded_server, tmp_path):
    url, _, _ = seeded_server
    blocker = tmp_path / "reports"
    blocker.write_text("a file where a folder should be\n")
    recipe = write_recipe(tmp_path, url, file_sink(blocker / "out.json"))
    proc, _ = _check(recipe)
    assert proc.returncode == 1
    assert (f"[FAIL] file sink: cannot write into {blocker}: {blocker} is a file, not a folder"
            in proc.stdout.splitlines())
    proc, report, _ = ingest(recipe, tmp_path)  # what check foretold
    assert proc.returncode == 1


def test_a_read_only_state_folder_fails_the_check(seeded_server, tmp_path):
    url, _, _ = seeded_server
    folder = tmp_path / "state"
    folder.mkdir()
    recipe = write_recipe(tmp_path, url, file_sink(tmp_path / "out.json"), pipeline="nightly",
                          state={"path": str(folder / "state.json")})
    proc, _ = _check(recipe)
    assert proc.returncode == 0 and "[ok] state (file): no checkpoint of 'nightly' yet" in proc.stdout, proc.stdout
    with _read_only(folder):
        proc, _ = _check(recipe)
        assert proc.returncode == 1
        [line] = [line for line in proc.stdout.splitlines() if line.startswith("[FAIL] state (file)")]
        assert line.startswith(f"[FAIL] state (file): cannot write into {folder}: {folder} is not writable (")
        assert line.endswith("); each run saves its checkpoint there")
        proc, report, _ = ingest(recipe, tmp_path)  # what check foretold
        assert proc.returncode == 1 and report["checkpoint_after"] is None


@pytest.mark.parametrize("collides_with", ["state", "recipe"])
def test_an_output_that_is_the_state_file_or_the_recipe_is_refused(seeded_server, tmp_path, collides_with):
    url, _, _ = seeded_server
    state, recipe_path = tmp_path / "state.json", tmp_path / "recipe.yml"
    target = state if collides_with == "state" else recipe_path
    recipe = write_recipe(tmp_path, url, file_sink(target), pipeline="nightly", state={"path": str(state)})
    what = "the state file (state.path)" if collides_with == "state" else "the recipe itself"
    before = recipe.read_bytes()
    for command in ("check", "ingest"):
        proc = subprocess.run(CLI + [command, "-c", str(recipe)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert proc.stderr.strip() == (f"error: sink.config.filename: {target} is {what}; a run would overwrite "
                                       "it: write the output elsewhere")
    assert recipe.read_bytes() == before and not state.exists()


def test_check_answers_in_bounded_time_against_a_dripping_state_server(seeded_server, tmp_path):
    url, _, _ = seeded_server
    with CatalogServer() as catalog, FaultProxy(catalog.url) as dripping:
        dripping.add("getTimeseriesAspectValues", "drip", interval_sec=2.0)
        recipe = write_recipe(tmp_path, url, rest_sink(catalog.url, tmp_path / "dead.json"), pipeline="nightly",
                              state={"backend": "datahub", "server": dripping.url})
        proc, took = _check(recipe)
    assert proc.returncode == 1 and took < 40, took
    assert "[FAIL] state (datahub): no answer within 20 s" in proc.stdout.splitlines()
    assert "[ok] catalog server" in proc.stdout


def test_ingest_gives_up_on_a_dripping_state_server_within_the_state_sections_deadline(seeded_server, tmp_path):
    url, _, _ = seeded_server
    with CatalogServer() as catalog, FaultProxy(catalog.url) as dripping:
        dripping.add("getTimeseriesAspectValues", "drip", interval_sec=2.0)
        recipe = write_recipe(tmp_path, url, rest_sink(catalog.url, tmp_path / "dead.json"), pipeline="nightly",
                              state={"backend": "datahub", "server": dripping.url, "request_deadline_sec": 3})
        started = time.monotonic()
        proc = subprocess.run(CLI + ["ingest", "-c", str(recipe)], capture_output=True, text=True, timeout=120)
        took = time.monotonic() - started
        delivered = [r for r in catalog.received if r.get("aspectName") != "dataHubExecutionRequestResult"]
    assert proc.returncode != 0 and took < 60, (took, proc.stderr)
    assert "state" in proc.stderr.lower() and dripping.url in proc.stderr, proc.stderr
    assert delivered == []  # nothing was sent on a checkpoint that could not be read
