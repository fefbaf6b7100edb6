"""Which entities of the last checkpoint are gone, and whether removing them looks safe: a crawl
that finds (almost) nothing is more likely broken than a registry that was emptied."""
from __future__ import annotations

from typing import Iterable, Optional

from connector.mapping import urns
from connector.change_tracking.changes import FULLY_LISTED, FULLY_LISTED_MARK
from connector.mapping.catalog_entities import PROMPT_MARK


def gone_entities(previous: dict[str, str], current: dict[str, str], seen_listed: set[str],
                  incremental: bool, deleted: Iterable[str]) -> list[str]:
    """An incremental crawl sees only what it lists whole (and the runs MLflow shows deleted);
    a full crawl sees everything, so whatever it did not see is gone."""
    removed = set(deleted)
    if incremental:
        removed.update(u for u in previous if (u.startswith(FULLY_LISTED) or previous[u].startswith(FULLY_LISTED_MARK))
                       and u not in seen_listed and u in current)
    else:
        removed.update(u for u in previous if u not in current)
    return sorted(removed)


def removal_refusal(removed: list[str], previous: dict[str, str], current: dict[str, str], max_ratio: float,
                    min_kind_size: int = 10) -> Optional[str]:
    """Why this removal looks like a broken crawl (None when it does not): it removes more than
    `max_ratio` of all known entities, or of any kind with at least `min_kind_size` of them, while
    the crawl found that many fewer of them. (An incremental run can only remove what it lists
    whole, so a ratio over all entities would let it remove every experiment and model when MLflow
    answers with nothing; a crawl that finds as many as before is not broken, e.g. after a change
    of mapping settings or of the connector gave entities new URNs.)"""
    tail = "MLflow may have answered with nothing; no removal emitted and the checkpoint kept"

    def looks_broken(gone: int, known: int, found: int) -> bool:
        return gone > max_ratio * known and found < (1 - max_ratio) * known

    if previous and looks_broken(len(removed), len(previous), len(current)):
        return f"would remove {len(removed)} of {len(previous)} entities (more than {max_ratio:.0%}): {tail}; {CONFIRM}"
    kind_of = _kinds(previous, current)
    for kind in sorted({kind_of(u) for u in removed}):
        of_kind = sum(1 for u in previous if kind_of(u) == kind)
        gone = sum(1 for u in removed if kind_of(u) == kind)
        found = sum(1 for u in current if kind_of(u) == kind)
        if of_kind >= min_kind_size and looks_broken(gone, of_kind, found):
            return f"would remove {gone} of {of_kind} {kind} entities (more than {max_ratio:.0%}): {tail}; {CONFIRM}"
    return emptied_listing(removed, previous, current)  # below the sizes where a ratio tells


# Kinds MLflow lists whole (search experiments, search registered models): one that answers none
# of what the state knows is far likelier a wrong URI or filter than a store emptied on purpose.
_LISTINGS = {"container": ("experiments", "tracking_uri"), "mlModelGroup": ("registered models", "registry_uri"),
             "prompt": ("prompts", "registry_uri")}
CONFIRM = ("if they were deleted on purpose, confirm once with `mlflow-catalog ingest --allow-mass-removal` "
           "(or state.allow_mass_removal: true)")


def emptied_listing(removed: list[str], previous: dict[str, str], current: dict[str, str]) -> Optional[str]:
    """Why removing these looks like a listing gone wrong, at any size: a whole listing (experiments,
    registered models) found none of the entities the state knows of its kind."""
    kind_of = _kinds(previous, current)
    for kind, (listing, setting) in _LISTINGS.items():
        gone = sum(1 for u in removed if kind_of(u) == kind)
        if not gone or any(kind_of(u) == kind for u in current):
            continue
        known = sum(1 for u in previous if kind_of(u) == kind)
        return (f"MLflow listed no {listing} while the state knows {known} (would remove {gone}): a wrong "
                f"{setting} or filter? No removal emitted and the checkpoint kept; {CONFIRM}")
    return None


def _kinds(previous: dict[str, str], current: dict[str, str]):
    """URN -> its kind for the guard: the entity type, except that a prompt (an mlModelGroup whose
    fingerprint says so) is a kind of its own."""
    def kind_of(urn: str) -> str:
        if (previous.get(urn) or current.get(urn) or "").startswith(PROMPT_MARK):
            return "prompt"
        return urns.entity_type(urn)
    return kind_of
