"""Our state file, advanced only once DataHub's pipeline has delivered the run.

`run_ingest` saves the new state as soon as its sink's `commit()` returns. Inside `datahub
ingest` that sink is the proposal queue: at that moment DataHub's sink may not have written the
last work units yet, and it may still fail. So `run_ingest` runs against a *staged* copy of the
state (a private temporary file), and the staged state replaces the pipeline's entry in the real
state file only in DataHub's commit step, which DataHub runs after its sink has flushed and
only when neither the source nor the sink reported a failure. For a sink that delivers only
after the commit step (datahub_delivery.py), the commit step keeps the staged state *pending*
(`<state path>.<pipeline>.pending.json`, with the evidence of what was handed over); the next
run of the pipeline confirms it against that evidence and saves it, or drops it, before it starts.

The pipeline's lock is held during the crawl, so a second run of the same pipeline stops at
once. It is released when the crawl ends (a lock must not outlive a run whose commit DataHub
skips); the commit takes it again and saves only when the real state is still the one the run
started from. Otherwise another run saved in between and this one's state is dropped: the
next run does the work again, nothing is skipped.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Callable, Optional

from connector.atomic import write_atomically
from connector.config.recipe import StateConfig
from connector.config.settings import open_state_store
from connector.state.lock import LockHeld, PipelineLock, lock_name
from connector.state.store import PipelineState, StateError, StateFile

# evidence -> why the pending run is not confirmed (None: it was delivered)
Confirm = Callable[[dict], Optional[str]]


def _revision(state: PipelineState) -> str:
    return json.dumps([state.checkpoint, state.backfill], sort_keys=True)


class DeferredCheckpoint:
    def __init__(self, config: StateConfig, pipeline_name: str):
        self.config = config
        self.pipeline_name = pipeline_name
        self.real = open_state_store(config, None)  # a file, or the catalog (state.server)
        self._lock = PipelineLock(config.path, pipeline_name)
        self._dir = Path(tempfile.mkdtemp(prefix="mlflow-catalog-staged-state-"))
        self.staged = StateFile(self._dir / "state.json")
        self._before: Optional[PipelineState] = None
        self.pending_path = Path(f"{config.path}.{lock_name(pipeline_name)}.pending.json")
        self.pending_outcome: Optional[str] = None  # what begin() did with a pending run, in words
        self.confirmed: Optional[dict] = None       # the pending checkpoint begin() saved
        # Removed by discard(), or when this object goes if DataHub skipped the commit step.
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._dir), True)

    @property
    def staged_config(self) -> StateConfig:
        """The state section `run_ingest` gets: the same settings, the staged file."""
        return self.config.model_copy(update={"path": str(self.staged.path), "backend": "file", "server": None,
                                              "token": None})

    def begin(self, confirm: Confirm) -> None:
        """Take the pipeline's lock, settle the previous run's pending state (saved when `confirm`
        finds it delivered) and stage the current state. Raises LockHeld or StateError."""
        self._lock.acquire()
        try:
            self._settle_pending(confirm)
            self._before = self.real.load(self.pipeline_name)
            if self._before.has_checkpoint or self._before.backfill:
                self.staged.save(self.pipeline_name, self._before)
        except BaseException:
            self._lock.release()
            raise

    def _settle_pending(self, confirm: Confirm) -> None:
        """Save the previous run's pending state when `confirm` finds it delivered; drop it otherwise."""
        try:
            text = self.pending_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        except OSError as exc:
            raise StateError(f"{self.pending_path} cannot be read: {exc.strerror}") from None
        run_id = None
        try:
            pending = json.loads(text)
            run_id = pending["evidence"].get("datahub_run_id")
            state = PipelineState.from_json(pending["state"])
            problem = confirm(pending["evidence"])
        except (ValueError, KeyError, TypeError, AttributeError, StateError) as exc:
            problem = f"{self.pending_path} is not a pending state ({type(exc).__name__}: {exc})"
        if problem is None and _revision(self.real.load(self.pipeline_name)) != pending["base"]:
            problem = "another run saved the pipeline's state since"
        if problem is None:
            self._save_real(state)
            self.confirmed = state.checkpoint
            self.pending_outcome = f"DataHub run {run_id} was delivered; its checkpoint is saved"
        else:
            self.pending_outcome = (f"DataHub run {run_id} is not confirmed as delivered ({problem}); its "
                                    "checkpoint is dropped and this run sends its changes again")
        try:
            self.pending_path.unlink()
        except OSError as exc:
            raise StateError(f"{self.pending_path} cannot be removed: {exc.strerror}") from None

    def end_crawl(self) -> None:
        self._lock.release()

    def promote(self, pending_evidence: Optional[dict] = None) -> Optional[dict]:
        """Save the staged state as the pipeline's state (with `pending_evidence`: as the pending
        state the next run confirms); its checkpoint, or None when the run staged nothing new.
        Raises StateError when the state cannot be saved."""
        if self._before is None:
            return None
        staged = self.staged.load(self.pipeline_name)
        if _revision(staged) == _revision(self._before):
            return None
        try:
            with PipelineLock(self.config.path, self.pipeline_name):
                if _revision(self.real.load(self.pipeline_name)) != _revision(self._before):
                    raise StateError(f"{self.real.path}: another run of pipeline {self.pipeline_name!r} saved its "
                                     "state during this one; this run's checkpoint is dropped (the next run "
                                     "does its work again)")
                if pending_evidence is None:
                    self._save_real(staged)
                else:
                    write_atomically(self.pending_path, json.dumps({
                        "base": _revision(self._before), "evidence": pending_evidence, "state": staged.to_json()}))
        except LockHeld as exc:
            raise StateError(f"{exc}; this run's checkpoint is dropped (the next run does its work again)") from None
        except OSError as exc:
            raise StateError(f"state file {self.real.path} cannot be written: {exc}") from None
        return staged.checkpoint

    def _save_real(self, state: PipelineState) -> None:
        try:
            self.real.save(self.pipeline_name, state)
        except OSError as exc:
            raise StateError(f"state file {self.real.path} cannot be written: {exc}") from None

    def discard(self) -> None:
        self._cleanup()
