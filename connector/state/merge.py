"""Merging two pipeline states written by runs that did not see each other (two machines running
one pipeline, or a checkpoint the catalog had not indexed yet when a run started).

A three-way merge per entity against `base`, the state the run saving started from:
- what only one side changed since `base` keeps that side's value (an entity only the other run
  sent stays known, so its removal still happens when it is deleted in MLflow; an entity only this
  run removed stays removed);
- what both sides hold alike is kept;
- what both sides changed differently, or one removed while the other kept, gets the fingerprint
  RESEND: the catalog holds whichever run's proposal came last, so the next run that sees the
  entity sends it again (and removes it again if it is gone).
Never the one "newer" state: both runs' work is kept.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from connector.state.store import PipelineState

RESEND = "resend"  # a fingerprint no entity has: the next run that sees the entity sends it again

_MARKS = ("runs_started_until", "registry_updated_until")


def merge_fingerprints(base: dict, mine: dict, theirs: dict) -> dict:
    merged = {}
    for urn in mine.keys() | theirs.keys():
        value = _merge_one(base.get(urn), mine.get(urn), theirs.get(urn))
        if value is not None:
            merged[urn] = value
    return merged


def _merge_one(base: Optional[str], mine: Optional[str], theirs: Optional[str]) -> Optional[str]:
    if mine == theirs or theirs == base:
        return mine
    if mine == base and base is None:  # only they know it
        return theirs
    return RESEND


def _merged_runs(base: PipelineState, mine: PipelineState, theirs: PipelineState) -> list:
    """The runs whose saves this state took in (for people reading the state)."""
    runs = {theirs.checkpoint.get("run_id"), *mine.checkpoint.get("merged_with", ()),
            *theirs.checkpoint.get("merged_with", ())}
    return sorted(r for r in runs - {base.checkpoint.get("run_id"), mine.checkpoint.get("run_id")} if r)


def merge_states(base: PipelineState, mine: PipelineState, theirs: PipelineState) -> PipelineState:
    """`mine` (the state this run is saving, made from `base`) merged with `theirs` (what other runs
    saved meanwhile). Fields this function does not know are `mine`'s."""
    fingerprints = merge_fingerprints(base.fingerprints, mine.fingerprints, theirs.fingerprints)
    checkpoint = dict(mine.checkpoint)
    if theirs.checkpoint:  # each side knows every run started before its mark: together, the later one
        for key in _MARKS:
            marks = [int(c.get(key) or 0) for c in (mine.checkpoint, theirs.checkpoint) if key in c]
            if marks:
                checkpoint[key] = max(marks)
        checkpoint["merged_with"] = _merged_runs(base, mine, theirs)
    optional = {urn: set(mine.optional_aspects.get(urn, ())) | set(theirs.optional_aspects.get(urn, ()))
                for urn in mine.optional_aspects.keys() | theirs.optional_aspects.keys() if urn in fingerprints}
    return dataclasses.replace(
        mine, checkpoint=checkpoint, fingerprints=fingerprints,
        open_runs=sorted(set(mine.open_runs) | set(theirs.open_runs)),
        config_hash=mine.config_hash or theirs.config_hash,
        optional_aspects={u: a for u, a in optional.items() if a},
        experiments={**theirs.experiments, **mine.experiments})
