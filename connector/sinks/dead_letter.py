"""Proposals that could not be delivered: kept in the file sink's format (so the file sink,
`datahub check metadata-file` and `mlflow-catalog send` read them), with the reasons beside it.

The file is written at every checkpoint and at the end, atomically, and added to rather than
replaced: dead letters of an earlier run that nobody re-sent yet stay in it (once per proposal).
`send` of the dead-letter file itself replaces it (what was delivered leaves it, what was not
stays). A later run that succeeds makes them out of date: it moves them aside (`retire`).
"""
from __future__ import annotations

import json
import os

import threading
from pathlib import Path
from typing import Optional

from connector.atomic import write_atomically
from connector.secrets import Redactor


class DeadLetters:
    def __init__(self, filename: str, redactor: Optional[Redactor] = None):
        self.path = Path(filename)
        # a server's message may echo what it was sent (a token, a URL with credentials)
        self._redactor = redactor or Redactor.from_recipe(None)
        self.reasons_path = self.path.with_name(self.path.name + ".reasons.jsonl")
        self.replace_existing = False
        self._records: list[dict] = []
        self._reasons: list[dict] = []
        self._earlier: Optional[tuple[list, str]] = None  # what the files held before this run
        self._lock = threading.Lock()

    def add(self, file_record: dict, reason: str) -> None:
        with self._lock:
            self._records.append(file_record)
            self._reasons.append({"entityUrn": file_record["entityUrn"],
                                  "aspectName": file_record["aspectName"],
                                  "reason": self._redactor.redact(reason)})

    def __len__(self) -> int:
        return len(self._records)

    def _load_earlier(self) -> tuple[list, str]:
        if self.replace_existing or not self.path.exists():
            return [], ""
        # (an OSError, e.g. a directory in the way, is the caller's: "cannot be written", naming the path)
        try:
            records = json.loads(self.path.read_text(encoding="utf-8"))
            reasons = self.reasons_path.read_text(encoding="utf-8") if self.reasons_path.exists() else ""
        except ValueError:
            # not ours to interpret: keep it aside rather than lose it
            os.replace(self.path, self.path.with_name(self.path.name + ".unreadable"))
            return [], ""
        return (records if isinstance(records, list) else []), reasons

    def write(self) -> Optional[str]:
        """Write the files atomically when anything was dead-lettered; return the path."""
        with self._lock:
            if not self._records:
                if self.replace_existing and self.path.exists():  # all of it was delivered
                    write_atomically(self.path, "[]\n")
                    self.reasons_path.unlink(missing_ok=True)
                return None
            if self._earlier is None:
                self._earlier = self._load_earlier()
            earlier_records, earlier_reasons = self._earlier
            kept = _not_again(earlier_records, self._records)
            records = [earlier_records[i] for i in kept] + self._records
            write_atomically(self.path, json.dumps(records, ensure_ascii=False, indent=1) + "\n")
            lines = [line for line in earlier_reasons.splitlines() if line.strip()]
            if len(lines) == len(earlier_records):  # a reason per record: keep those of the records kept
                lines = [lines[i] for i in kept]
            lines += [json.dumps(r, ensure_ascii=False) for r in self._reasons]
            write_atomically(self.reasons_path, "".join(line + "\n" for line in lines))
            return str(self.path)


def retire(filename: str) -> Optional[str]:
    """After a run that sent everything changed since the last good run (and failed nowhere), the
    dead letters of earlier runs are out of date: re-sending them could overwrite newer values.
    They are moved aside to FILE.superseded (replacing an older one); its path, or None."""
    path = Path(filename)
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not records:
        return None
    superseded = path.with_name(path.name + ".superseded")
    os.replace(path, superseded)
    reasons = path.with_name(path.name + ".reasons.jsonl")
    if reasons.exists():
        os.replace(reasons, reasons.with_name(reasons.name + ".superseded"))
    return str(superseded)


def _key(record) -> tuple:
    if not isinstance(record, dict):
        return (id(record),)
    return (record.get("entityUrn"), record.get("aspectName"),
            json.dumps(record.get("aspect"), sort_keys=True, ensure_ascii=False))


def _not_again(earlier: list, now: list[dict]) -> list[int]:
    """The positions of earlier dead letters this run did not dead-letter again: a proposal a
    server keeps refusing is in the file once (as this run's), not once per run."""
    again = {_key(r) for r in now}
    return [i for i, r in enumerate(earlier) if _key(r) not in again]
