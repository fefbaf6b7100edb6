"""Change detection: each entity's fingerprint (a hash of the MLflow data it was made from)
against the one the catalog got last time."""
from __future__ import annotations

from connector.mapping.catalog_entities import FULLY_LISTED_MARK, MappedEntity

# Entity kinds an incremental crawl lists in full, so their disappearance is visible to it.
FULLY_LISTED = ("urn:li:container:", "urn:li:mlModelGroup:", "urn:li:mlModel:", "urn:li:aiAgent:")
_RUN = "urn:li:dataProcessInstance:"


class ChangeDetector:
    def __init__(self, baseline: dict[str, str], current: dict[str, str], emit_all: bool):
        self.baseline = baseline          # what the catalog already has: not sent again
        self.current = current            # URN -> fingerprint of this run's view
        self.emit_all = emit_all          # a full crawl sends everything
        self.seen_listed: set[str] = set()
        self.changed_runs: set[str] = set()

    def see(self, urn: str, fp: str) -> bool:
        """Note the entity's fingerprint; True when it differs from the catalog's."""
        self.current[urn] = fp
        # a listed entity met another way (a deleted evaluation dataset a run still reads) is still there
        if urn.startswith(FULLY_LISTED) or FULLY_LISTED_MARK in (fp[:len(FULLY_LISTED_MARK)],
                                                                 self.baseline.get(urn, "")[:len(FULLY_LISTED_MARK)]):
            self.seen_listed.add(urn)
        return self.baseline.get(urn) != fp

    def unchanged_but_listed(self, urn: str) -> None:
        """An entity listed in this crawl that the plan already knows to be unchanged."""
        if urn.startswith(FULLY_LISTED):
            self.seen_listed.add(urn)

    def should_emit(self, entity: MappedEntity) -> bool:
        changed = self.see(entity.urn, entity.fingerprint)
        if changed and entity.urn.startswith(_RUN):
            self.changed_runs.add(entity.urn)
        return changed or self.emit_all

    def version_should_emit(self, urn: str, fp: str, run_urn: str) -> bool:
        """A version is sent when it changed, or when its run changed (params, metrics)."""
        changed = self.see(urn, fp)
        return changed or run_urn in self.changed_runs or self.emit_all

    def forget(self, urn: str) -> bool:
        """The entity is gone from MLflow; True when the catalog had it."""
        return self.current.pop(urn, None) is not None
