"""What mapping one crawl remembers from record to record, in memory only (mapping does no I/O):
the shared entities already emitted, and the source behind each dataset URN, so that two
different datasets meeting under one URN become a warning for the report. A record whose mapping
fails is forgotten (`forget_pending`): the shared entities it met go with the next record."""
from __future__ import annotations


class MappingMemory:
    def __init__(self) -> None:
        self._emitted: set[str] = set()
        self._pending: list[str] = []  # met by the record being mapped
        self._dataset_sources: dict[str, tuple[str, str]] = {}  # dataset URN -> (identity, label) first seen
        self._warned: set[tuple[str, str]] = set()
        self._warnings: list[tuple[str, str]] = []
        self.evaluation_datasets: dict[str, set[str]] = {}  # evaluation dataset name -> its URNs

    def saw_evaluation_dataset(self, name: str, urn: str) -> None:
        """An evaluation dataset listed this crawl (before the models its evaluations measured)."""
        self.evaluation_datasets.setdefault(name, set()).add(urn)

    def first_emission(self, urn: str) -> bool:
        """True the first time a shared entity (dataset, feature, deployment) is met this crawl."""
        if urn in self._emitted:
            return False
        self._emitted.add(urn)
        self._pending.append(urn)
        return True

    def settle(self) -> None:
        """The record mapped: what it met counts as emitted."""
        self._pending.clear()

    def forget_pending(self) -> None:
        """The record failed to map: nothing it met was emitted."""
        self._emitted.difference_update(self._pending)
        self._pending.clear()

    def saw_dataset(self, urn: str, identity: str, label: str) -> None:
        """`identity` tells datasets apart (their source); `label` says it in words."""
        first_identity, first_label = self._dataset_sources.setdefault(urn, (identity, label))
        if first_identity != identity and (urn, identity) not in self._warned:
            self._warned.add((urn, identity))
            self._warnings.append(("Datasets merged under one name", (
                f"{urn} stands for two different datasets ({first_label} and {label}); it describes "
                "the first one. With `dataset_urn: source` (the default) they are kept apart")))

    def take_warnings(self) -> list[tuple[str, str]]:
        """The (title, message) warnings since the last call."""
        taken, self._warnings = self._warnings, []
        return taken
