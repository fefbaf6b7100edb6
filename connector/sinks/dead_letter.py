"""Proposals that could not be delivered: kept in the file sink's format (so the file sink,
`datahub check metadata-file` and `mlflow-catalog send` read them), with the reasons beside it.

The file is written at every checkpoint and at the end, atomically, and added to rather than
replaced: dead letters of an earlier run that nobody re-sent yet stay in it. `send` of the
dead-letter file itself replaces it (what was delivered leaves it, what was not stays).
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
            write_atomically(self.path, json.dumps(earlier_records + self._records, ensure_ascii=False,
                                                   indent=1) + "\n")
            write_atomically(self.reasons_path, earlier_reasons + "".join(
                json.dumps(r, ensure_ascii=False) + "\n" for r in self._reasons))
            return str(self.path)
