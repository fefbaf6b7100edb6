"""File sink: one JSON array of MCPs, the format DataHub's file sink writes and
`datahub ingest` / `datahub check metadata-file` read.

Proposals stream into a temporary file beside the target, renamed over it only
on commit, so a crash never leaves a half-written file.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from connector.mapping.common import Mcp
from connector.sinks.base import SinkError, SinkResult, to_wire


def file_record(proposal: Mcp, system_metadata: dict) -> dict:
    record = to_wire(proposal, system_metadata)
    record["aspect"] = {"json": proposal.aspect}
    return record


class FileSink:
    name = "file"

    def __init__(self, filename: str):
        self.path = Path(filename)
        self._tmp = None
        self._count = 0

    def _remove_stale_temp_files(self) -> None:
        """Temp files of runs killed before their rename (kill -9 leaves them); an hour old at least,
        so a concurrent run's file is left alone."""
        cutoff = time.time() - 3600
        for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            try:
                if stale.stat().st_mtime < cutoff:
                    stale.unlink()
            except OSError:
                pass

    def _open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temp_files()
            fd, tmp_name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                            dir=self.path.parent)
        except OSError as exc:
            raise SinkError(f"file sink cannot write to {self.path.parent}: {exc.strerror}") from exc
        self._tmp = os.fdopen(fd, "w", encoding="utf-8")
        self._tmp_name = tmp_name
        self._tmp.write("[")

    def write(self, proposal: Mcp, system_metadata: dict) -> None:
        if self._tmp is None:
            self._open()
        self._tmp.write(",\n" if self._count else "\n")
        json.dump(file_record(proposal, system_metadata), self._tmp, ensure_ascii=False,
                  allow_nan=False)
        self._count += 1

    def commit(self) -> SinkResult:
        if self._tmp is None:
            self._open()
        self._tmp.write("\n]\n" if self._count else "]\n")
        self._tmp.flush()
        os.fsync(self._tmp.fileno())
        self._tmp.close()
        os.replace(self._tmp_name, self.path)
        self._tmp = None
        return SinkResult(delivered=self._count)

    def abort(self) -> SinkResult:
        if self._tmp is not None:
            self._tmp.close()
            os.unlink(self._tmp_name)
            self._tmp = None
        return SinkResult(delivered=0, failed=self._count,
                          messages=[f"nothing written to {self.path}: the run did not finish"])


def read_proposals(filename: str) -> list[dict]:
    """Read a file written by this sink (or DataHub's) back as MCP dicts, every record checked
    (raises OSError or proposal_file.ProposalFileError, a ValueError naming the bad record)."""
    from connector.sinks.proposal_file import read_proposal_file

    return read_proposal_file(filename)
