"""Proposals that could not be delivered: kept in the file sink's format (so the file sink,
`datahub check metadata-file` and `mlflow-catalog send` read them), with the reasons beside it."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class DeadLetters:
    def __init__(self, filename: str):
        self.path = Path(filename)
        self.reasons_path = self.path.with_name(self.path.name + ".reasons.jsonl")
        self._records: list[dict] = []
        self._reasons: list[dict] = []
        self._lock = threading.Lock()

    def add(self, file_record: dict, reason: str) -> None:
        with self._lock:
            self._records.append(file_record)
            self._reasons.append({"entityUrn": file_record["entityUrn"],
                                  "aspectName": file_record["aspectName"], "reason": reason})

    def __len__(self) -> int:
        return len(self._records)

    def write(self) -> str | None:
        """Write the file atomically when anything was dead-lettered; return its path."""
        with self._lock:
            if not self._records:
                return None
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for target, text in (
                (self.path, json.dumps(self._records, ensure_ascii=False, indent=1) + "\n"),
                (self.reasons_path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self._reasons)),
            ):
                tmp = target.with_name(f".{target.name}.tmp")
                tmp.write_text(text, encoding="utf-8")
                os.replace(tmp, target)
            return str(self.path)
