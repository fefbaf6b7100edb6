"""The state file: per pipeline, the checkpoint of its last successful run.

    {"version": 1, "pipelines": {NAME: {
        "checkpoint": {"runs_started_until": ms, "finished_at": ms, "run_id": ..., "mode": ...},
        "open_runs": [run ids still RUNNING at the checkpoint],
        "config_hash": "...",                 # mapping settings the fingerprints were made with
        "fingerprints": {URN_PREFIX: {rest of URN: hash}},   # every entity emitted, compact
    "optional_aspects": {URN: [aspect, ...]},  # deprecation, model card...: cleared when they go
    "experiments": {experiment id: container URN},  # a renamed experiment gets its runs re-read
        "backfill": {...},                    # progress of an unfinished full crawl, for --resume
        "pending_removals": [URN, ...],       # removals the catalog has not taken yet: sent again
        "dirty_runs": [run id, ...],          # runs whose entities a failed or refused delivery left
                                              # unsure in the catalog: read again and re-sent
        "mapping_version": N                  # connector.mapping.version.MAPPING_VERSION of the run
    }}}

Written atomically (temp file + rename): a crash leaves the previous state intact.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from connector.atomic import write_atomically

_PREFIXES = (
    "urn:li:dataProcessInstance:", "urn:li:container:", "urn:li:mlModel:(urn:li:dataPlatform:mlflow,",
    "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,", "urn:li:dataset:(urn:li:dataPlatform:",
    "urn:li:tag:", "urn:li:mlModelDeployment:(urn:li:dataPlatform:", "urn:li:mlFeature:(",
)


def compact(fingerprints: dict[str, str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for urn, value in sorted(fingerprints.items()):
        prefix = next((p for p in _PREFIXES if urn.startswith(p)), "")
        out.setdefault(prefix, {})[urn[len(prefix):]] = value
    return out


def expand(compacted: dict[str, dict[str, str]]) -> dict[str, str]:
    return {prefix + rest: value for prefix, group in compacted.items() for rest, value in group.items()}


@dataclass
class PipelineState:
    checkpoint: dict = field(default_factory=dict)
    open_runs: list = field(default_factory=list)
    config_hash: str = ""
    fingerprints: dict = field(default_factory=dict)  # URN -> hash
    backfill: Optional[dict] = None
    # URN -> the aspects only emitted when MLflow has data for them (deprecation, model card, ...)
    optional_aspects: dict = field(default_factory=dict)
    experiments: dict = field(default_factory=dict)  # experiment id -> container URN
    pending_removals: list = field(default_factory=list)  # URNs whose removal the catalog has not taken
    dirty_runs: list = field(default_factory=list)  # run ids to read again (their entities are re-sent)
    mapping_version: int = 0  # of the release that saved it (0: a release before mapping versions)

    @property
    def has_checkpoint(self) -> bool:
        return bool(self.checkpoint)

    def to_json(self) -> dict:
        out = {"checkpoint": self.checkpoint, "open_runs": sorted(self.open_runs),
               "config_hash": self.config_hash, "fingerprints": compact(self.fingerprints),
               "optional_aspects": {u: sorted(a) for u, a in sorted(self.optional_aspects.items()) if a},
               "experiments": dict(sorted(self.experiments.items())), "mapping_version": self.mapping_version}
        if self.pending_removals:
            out["pending_removals"] = sorted(self.pending_removals)
        if self.dirty_runs:
            out["dirty_runs"] = sorted(self.dirty_runs)
        if self.backfill:
            out["backfill"] = self.backfill
        return out

    @classmethod
    def from_json(cls, data: dict) -> "PipelineState":
        problem = entry_problem(data)
        if problem:
            raise StateError(problem)
        return cls(checkpoint=data.get("checkpoint") or {}, open_runs=list(data.get("open_runs") or []),
                   config_hash=data.get("config_hash", ""),
                   fingerprints=expand(data.get("fingerprints") or {}), backfill=data.get("backfill"),
                   optional_aspects={u: set(a) for u, a in (data.get("optional_aspects") or {}).items()},
                   experiments=dict(data.get("experiments") or {}),
                   pending_removals=list(data.get("pending_removals") or []),
                   dirty_runs=list(data.get("dirty_runs") or []),
                   mapping_version=int(data.get("mapping_version") or 0))


class StateError(Exception):
    """The state file cannot be read or written."""


STATE_VERSION = 1
_ENTRY_TYPES = {"checkpoint": dict, "open_runs": list, "config_hash": str, "fingerprints": dict,
                "backfill": dict, "optional_aspects": dict, "experiments": dict,
                "pending_removals": list, "dirty_runs": list, "mapping_version": int}


def entry_problem(entry) -> Optional[str]:
    """Why a pipeline's entry cannot be used, or None. Shapes only: values are this program's own."""
    if not isinstance(entry, dict):
        return f"is {type(entry).__name__}, not an object"
    for key, expected in _ENTRY_TYPES.items():
        value = entry.get(key)
        if value is not None and not isinstance(value, expected):
            return f"'{key}' is {type(value).__name__}, not {expected.__name__}"
    fingerprints = entry.get("fingerprints") or {}
    if not all(isinstance(group, dict) for group in fingerprints.values()):
        return "'fingerprints' holds a value that is not an object"
    return _value_problem(entry)


_TIMES = ("runs_started_until", "registry_updated_until", "finished_at")


def _is_time(value) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def _value_problem(entry: dict) -> Optional[str]:
    """The values this program computes with (times, run ids): a hand-edited or damaged entry is
    named here, not met later as a crash."""
    checkpoint = entry.get("checkpoint") or {}
    for key in _TIMES:
        if not _is_time(checkpoint.get(key)):
            return f"'checkpoint.{key}' is {str(checkpoint[key])[:40]!r}, not a time in milliseconds"
    if not all(isinstance(run_id, str) for run_id in entry.get("open_runs") or []):
        return "'open_runs' holds a value that is not a run id"
    return _backfill_problem(entry.get("backfill") or {})


def _backfill_problem(backfill: dict) -> Optional[str]:
    for key in ("max_start_time", "started_at"):
        if not _is_time(backfill.get(key)):
            return f"'backfill.{key}' is {str(backfill[key])[:40]!r}, not a time in milliseconds"
    progress = backfill.get("progress")
    current = progress.get("current") if isinstance(progress, dict) else None
    if progress is not None and (not isinstance(progress, dict) or not isinstance(current, (dict, type(None)))
                                 or not _is_time((current or {}).get("start_time"))):
        return "'backfill.progress' is not the progress of a full crawl"
    return None


class StateFile:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _read_all(self) -> dict:
        if not self.path.exists():
            return {"version": 1, "pipelines": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StateError(f"state file {self.path} cannot be read: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("pipelines"), dict):
            raise StateError(f"state file {self.path} is not a connector state file")
        version = data.get("version")
        if version != STATE_VERSION:
            newer = isinstance(version, int) and not isinstance(version, bool) and version > STATE_VERSION
            raise StateError(f"state file {self.path} has version {version!r}; this connector reads version "
                             f"{STATE_VERSION}" + (" (the file was written by a newer release: upgrade, or "
                                                   "point state.path elsewhere)" if newer else ""))
        return data

    def load(self, pipeline: str) -> PipelineState:
        entry = self._read_all()["pipelines"].get(pipeline)
        if entry is None:
            return PipelineState()
        try:
            return PipelineState.from_json(entry)
        except StateError as exc:
            raise StateError(f"state file {self.path}, pipeline {pipeline!r}: the entry {exc}; move the file "
                             f"away (the next run is then a full crawl)") from None

    def save(self, pipeline: str, state: PipelineState) -> None:
        from connector.state.lock import state_file_lock

        try:
            with state_file_lock(self.path):  # other pipelines may save into the same file
                data = self._read_all()
                data["pipelines"][pipeline] = state.to_json()
                write_atomically(self.path, json.dumps(data, separators=(",", ":")))
        except OSError as exc:
            raise StateError(f"state file {self.path} cannot be written: {exc.strerror or exc}") from None
