"""Aspects a model or group has only while MLflow holds data for them (deprecation, model card,
training data...): which ones each entity was sent, so one that goes is sent cleared."""
from __future__ import annotations

from connector.mapping.clearing import CLEARED_ASPECTS, OWNER_ASPECTS, cleared
from connector.mapping.common import Mcp


class OptionalAspects:
    def __init__(self, before: dict[str, set]):
        self.before = before
        self.now: dict[str, set] = {}  # URN -> optional aspects sent this run (entities re-sent only)

    def sent(self, proposal: Mcp) -> None:
        if proposal.aspect_name in OWNER_ASPECTS:
            self.now.setdefault(proposal.entity_urn, set())
        elif proposal.aspect_name in CLEARED_ASPECTS and proposal.aspect != CLEARED_ASPECTS[proposal.aspect_name]:
            self.now.setdefault(proposal.entity_urn, set()).add(proposal.aspect_name)

    def clearing_proposals(self, removed: set[str]) -> list[Mcp]:
        """Cleared values for optional aspects re-sent entities no longer have."""
        return [cleared(urn, name) for urn, aspects in sorted(self.now.items()) if urn not in removed
                for name in sorted(self.before.get(urn, set()) - aspects)]

    def to_save(self, current: dict[str, str]) -> dict[str, set]:
        kept = {u: set(a) for u, a in self.before.items() if u in current and u not in self.now}
        kept.update({u: a for u, a in self.now.items() if a and u in current})
        return kept
