"""Where a pipeline's state is kept: a local file (connector.state.store.StateFile) or the catalog
(connector.state.catalog_store.GmsStateStore); connector.config.settings.open_state_store picks one."""
from __future__ import annotations

from typing import Protocol

from connector.state.store import PipelineState


class StateStore(Protocol):
    @property
    def path(self) -> object: ...  # where the state is, for messages

    def load(self, pipeline: str) -> PipelineState: ...

    def save(self, pipeline: str, state: PipelineState) -> None: ...
