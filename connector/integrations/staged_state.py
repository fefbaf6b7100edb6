"""Our state file, advanced only once DataHub's pipeline has delivered the run.

`run_ingest` saves the new state as soon as its sink's `commit()` returns. Inside `datahub
ingest` that sink is the handoff queue: at that moment DataHub's sink may not have written the
last work units yet, and it may still fail. So `run_ingest` runs against a *staged* copy of the
state (a private temporary file), and the staged state replaces the pipeline's entry in the real
state file only in DataHub's commit step, which DataHub runs after its sink has flushed and
only when neither the source nor the sink reported a failure.

The pipeline's lock is held during the crawl, so a second run of the same pipeline stops at
once. It is released when the crawl ends (a lock must not outlive a run whose commit DataHub
skips); the commit takes it again and saves only when the real state is still the one the run
started from. Otherwise another run saved in between and this one's state is dropped: the
next run does the work again, nothing is skipped.
"""
from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Optional

from connector.recipe import StateConfig
from connector.settings import open_state_store
from connector.state.lock import LockHeld, PipelineLock
from connector.state.store import PipelineState, StateError, StateFile


def _revision(state: PipelineState) -> tuple:
    return state.checkpoint, state.backfill


class StagedState:
    def __init__(self, config: StateConfig, pipeline_name: str):
        self.config = config
        self.pipeline_name = pipeline_name
        self.real = open_state_store(config, None)  # a file, or the catalog (state.server)
        self._lock = PipelineLock(config.path, pipeline_name)
        self._dir = Path(tempfile.mkdtemp(prefix="mlflow-catalog-staged-state-"))
        self.staged = StateFile(self._dir / "state.json")
        self._before: Optional[PipelineState] = None
        # Removed by discard(), or when this object goes if DataHub skipped the commit step.
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self._dir), True)

    @property
    def staged_config(self) -> StateConfig:
        """The state section `run_ingest` gets: the same settings, the staged file."""
        return self.config.model_copy(update={"path": str(self.staged.path), "backend": "file", "server": None,
                                              "token": None})

    def begin(self) -> None:
        """Take the pipeline's lock and stage its current state. Raises LockHeld or StateError."""
        self._lock.acquire()
        try:
            self._before = self.real.load(self.pipeline_name)
            if self._before.has_checkpoint or self._before.backfill:
                self.staged.save(self.pipeline_name, self._before)
        except BaseException:
            self._lock.release()
            raise

    def end_crawl(self) -> None:
        self._lock.release()

    def promote(self) -> Optional[dict]:
        """Save the staged state as the pipeline's state; its checkpoint, or None when the run
        staged nothing new. Raises StateError when the state cannot be saved."""
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
                self.real.save(self.pipeline_name, staged)
        except LockHeld as exc:
            raise StateError(f"{exc}; this run's checkpoint is dropped (the next run does its work again)") from None
        except OSError as exc:
            raise StateError(f"state file {self.real.path} cannot be written: {exc}") from None
        return staged.checkpoint

    def discard(self) -> None:
        self._cleanup()
