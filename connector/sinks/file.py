"""File sink: one JSON array of MCPs, the format DataHub's file sink writes and
`datahub ingest` / `datahub check metadata-file` read.

Proposals stream into a temporary file beside the target, renamed over it only when the run
succeeded: a crash or a failed run never replaces the previous good file. The filename may hold
`{run_id}`, `{timestamp}` and `{pipeline_name}`, so that each run writes a file of its own (an
incremental run's file holds only its changes and removals: a fixed name would lose the last
run's removals for a consumer that loads files).
"""
from __future__ import annotations

import json
import time
from typing import Optional

from connector.atomic import AtomicFile, remove_stale_temp_files
from connector.mapping.common import Mcp
from connector.sinks.base import SinkError, SinkResult, to_wire

PLACEHOLDERS = ("run_id", "timestamp", "pipeline_name")
# Characters between background syncs of the temporary file: the sync before the rename then has
# little left to write (a 100 MB file synced whole at the end held the run ~0.1 s per 25 MB).
SYNC_EVERY = 8_000_000
# One encoder, reused: `encode` takes the C encoder (json.dump to a stream takes the pure-Python one,
# ~3x slower) and writes the same bytes; allow_nan=False still refuses NaN and infinities.
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def file_record(proposal: Mcp, system_metadata: dict) -> dict:
    record = to_wire(proposal, system_metadata)
    record["aspect"] = {"json": proposal.aspect}
    return record


def _file_safe(value: str) -> str:
    """A value put into a file name: no directory separator, no `..` (a pipeline named `team/a`)."""
    return "".join(c if c.isalnum() or c in "-_.@+=" else "_" for c in value).replace("..", "_")


def expand_filename(template: str, run_id: str = "", pipeline_name: str = "") -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return template.format(run_id=_file_safe(run_id), timestamp=stamp,
                           pipeline_name=_file_safe(pipeline_name or "mlflow"))


class FileSink:
    name = "file"
    delivers_as_it_goes = False  # the file appears whole at commit

    def __init__(self, filename: str):
        self.output: Optional[str] = filename
        self._atomic: Optional[AtomicFile] = None
        self._count = 0
        self._unsynced = 0  # characters written since the last background sync

    def _file(self):
        if self._atomic is None:
            try:
                remove_stale_temp_files(self.output or "")
                self._atomic = AtomicFile(self.output or "")
            except OSError as exc:
                raise SinkError(f"file sink cannot write {self.output}: {exc.strerror or exc}") from None
            self._count = self._unsynced = 0  # a sink written again after its commit starts a new file
            self._atomic.file.write("[")
        return self._atomic.file

    def write(self, proposal: Mcp, system_metadata: dict) -> None:
        out = self._file()
        text = (",\n" if self._count else "\n") + _encode(file_record(proposal, system_metadata))
        try:
            out.write(text)
            self._unsynced += len(text)
            if self._unsynced > SYNC_EVERY and self._atomic is not None:
                self._atomic.sync_in_background()
                self._unsynced = 0
        except OSError as exc:  # a full disk, a file size limit
            raise SinkError(f"file sink cannot write {self.output}: {exc.strerror or exc}") from None
        self._count += 1

    def flush(self) -> None:
        if self._atomic is not None:
            self._atomic.file.flush()

    def dead_letter_unsent(self, proposal: Mcp, system_metadata: dict, reason: str) -> None:
        pass  # a file sink fails whole: nothing of it is published, the caller's input stays

    def resending(self, filename: str) -> None:
        pass

    def commit(self) -> SinkResult:
        out = self._file()
        out.write("\n]\n" if self._count else "]\n")
        assert self._atomic is not None
        try:
            self._atomic.commit()
        except OSError as exc:
            raise SinkError(f"file sink cannot write {self.output}: {exc.strerror or exc}") from None
        finally:
            self._atomic = None
        return SinkResult(delivered=self._count)

    def abort(self) -> SinkResult:
        if self._atomic is not None:
            self._atomic.discard()
            self._atomic = None
        return SinkResult(delivered=0, failed=self._count,
                          messages=[f"nothing written to {self.output}: the run did not succeed; "
                                    "the previous file, if any, is unchanged"])


class StdoutSink(FileSink):
    """--preview: the proposals to standard output, in the file sink's format."""
    name = "stdout"

    def __init__(self, stream) -> None:
        super().__init__("<stdout>")
        self.output = None
        self._stream = stream
        self._started = False

    def _file(self):
        if not self._started:
            self._started = True
            self._stream.write("[")
        return self._stream

    def commit(self) -> SinkResult:
        self._file()
        self._stream.write("\n]\n" if self._count else "]\n")
        self._stream.flush()
        return SinkResult(delivered=self._count)

    def abort(self) -> SinkResult:
        return self.commit()


def read_proposals(filename: str) -> list[dict]:
    """Read a file written by this sink (or DataHub's) back as MCP dicts, every record checked
    (raises OSError or proposal_file.ProposalFileError, a ValueError naming the bad record)."""
    from connector.sinks.proposal_file import read_proposal_file

    return read_proposal_file(filename)
