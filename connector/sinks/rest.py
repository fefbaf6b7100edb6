"""REST sink: proposals to the catalog server in batches, several batches in flight while the
crawl goes on, retried, and nothing lost (what is not delivered ends in the dead-letter file).

Per-entity order is kept: a batch waits for any in-flight batch holding one of its entities.
A batch the server rejects is split in halves until the bad proposals are found, so the good
ones are still delivered and only the bad ones are dead-lettered, with the server's message.
"""
from __future__ import annotations

import json
import os
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Optional

from connector.mapping.common import Mcp
from connector.sinks.base import SinkError, SinkResult
from connector.sinks.dead_letter import DeadLetters
from connector.sinks.file import file_record
from connector.sinks.gms_client import (
    BatchEndpointMissing, GmsAuthError, GmsClient, GmsRejected, GmsSettings, GmsUnavailable, rest_record,
)


@dataclass
class _Item:
    proposal: Mcp
    system_metadata: dict
    wire: dict
    size: int


@dataclass
class _Batch:
    items: list = field(default_factory=list)
    size: int = 0
    urns: set = field(default_factory=set)


class RestSink:
    name = "datahub-rest"
    output: Optional[str] = None
    delivers_as_it_goes = True

    def __init__(self, settings: GmsSettings, *, max_batch_size: int = 200,
                 max_batch_bytes: int = 14 * 1024 * 1024, max_in_flight: int = 4,
                 dead_letter_file: str = "dead-letter.json"):
        self.client = GmsClient(settings)
        self.server = self.client.server
        self.max_batch_size = max_batch_size
        self.max_batch_bytes = max_batch_bytes
        self.dead_letters = DeadLetters(dead_letter_file)
        self._executor = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="gms-send")
        self._max_in_flight = max_in_flight
        self._in_flight: dict[Future, _Batch] = {}
        self._batch = _Batch()
        self._lock = threading.Lock()
        self._use_batch_endpoint = True
        self._fatal: Exception | None = None
        self.delivered = 0
        self.rejections: list[str] = []

    def __repr__(self) -> str:
        return f"RestSink({self.server!r})"

    # -- accepting proposals -------------------------------------------------
    def write(self, proposal: Mcp, system_metadata: dict) -> None:
        wire = rest_record(proposal, system_metadata)
        item = _Item(proposal, system_metadata, wire, len(json.dumps(wire, ensure_ascii=False).encode("utf-8")))
        if self._fatal is not None:
            self._dead_letter([item], f"not sent: {self._fatal}")
            raise SinkError(str(self._fatal))
        full = self._batch
        if full.items and (len(full.items) >= self.max_batch_size
                           or full.size + item.size > self.max_batch_bytes):
            self._batch = _Batch()
        self._batch.items.append(item)
        self._batch.size += item.size
        self._batch.urns.add(proposal.entity_urn)
        if full is not self._batch:
            self._submit(full)

    def _submit(self, batch: _Batch) -> None:
        # keep per-entity order, and at most max_in_flight batches (bounded memory)
        try:
            while True:
                self._collect(block=False)
                blockers = [f for f, b in self._in_flight.items() if b.urns & batch.urns]
                if blockers:
                    wait(blockers)
                    continue
                if len(self._in_flight) >= self._max_in_flight:
                    wait(list(self._in_flight), return_when=FIRST_COMPLETED)
                    continue
                break
        except BaseException:  # interrupted while waiting (Ctrl-C, SIGTERM): keep the batch
            self._dead_letter(batch.items, "not sent: the run was interrupted")
            raise
        if self._fatal is not None:
            self._dead_letter(batch.items, f"not sent: {self._fatal}")
            raise SinkError(str(self._fatal))
        self._in_flight[self._executor.submit(self._deliver, batch.items)] = batch

    def _collect(self, block: bool) -> None:
        if block and self._in_flight:
            wait(list(self._in_flight))
        for future in [f for f in self._in_flight if f.done()]:
            del self._in_flight[future]
            future.result()  # _deliver never raises; a bug would surface here

    # -- delivering ----------------------------------------------------------
    def _dead_letter(self, items: list[_Item], reason: str) -> None:
        for item in items:
            self.dead_letters.add(file_record(item.proposal, item.system_metadata), reason)

    def _deliver(self, items: list[_Item]) -> None:
        """Deliver or dead-letter every item; never raises."""
        if self._fatal is not None:
            self._dead_letter(items, f"not sent: {self._fatal}")
            return
        try:
            self._send(items)
        except (GmsAuthError, GmsUnavailable) as exc:
            with self._lock:
                self._fatal = self._fatal or exc
            self._dead_letter(items, str(exc))
        except Exception as exc:  # pragma: no cover - keep the promise of "nothing lost"
            self._dead_letter(items, f"{type(exc).__name__}: {exc}")

    def _send(self, items: list[_Item]) -> None:
        if self._use_batch_endpoint:
            try:
                self.client.send_batch([i.wire for i in items])
            except BatchEndpointMissing:
                self._use_batch_endpoint = False
            except GmsRejected as exc:
                if len(items) == 1:
                    self._reject(items[0], exc)
                    return
                middle = len(items) // 2  # find the bad proposal(s), keep the good ones
                self._send(items[:middle])
                self._send(items[middle:])
                return
            else:
                self._count(len(items))
                return
        for item in items:
            try:
                self.client.send_one(item.wire)
            except GmsRejected as exc:
                self._reject(item, exc)
            else:
                self._count(1)

    def _reject(self, item: _Item, exc: GmsRejected) -> None:
        reason = f"rejected by {self.server}: {exc}"
        self.dead_letters.add(file_record(item.proposal, item.system_metadata), reason)
        with self._lock:
            if len(self.rejections) < 100:
                self.rejections.append(f"{item.proposal.entity_urn} {item.proposal.aspect_name}: {reason}")

    def _count(self, n: int) -> None:
        with self._lock:
            self.delivered += n

    def flush(self) -> None:
        """Return once everything written so far is delivered or dead-lettered (on disk)."""
        if self._batch.items:
            batch, self._batch = self._batch, _Batch()
            self._submit(batch)
        self._collect(block=True)
        self.dead_letters.write()
        if self._fatal is not None:
            raise SinkError(str(self._fatal))

    def dead_letter_unsent(self, proposal: Mcp, system_metadata: dict, reason: str) -> None:
        """A proposal the caller could no longer write (the sink failed): keep it with the rest."""
        self.dead_letters.add(file_record(proposal, system_metadata), reason)

    def resending(self, filename: str) -> None:
        """Sending the dead letters themselves: what stays undelivered replaces the file."""
        path = self.dead_letters.path
        if path.exists() and os.path.exists(filename) and os.path.samefile(path, filename):
            self.dead_letters.replace_existing = True

    # -- ending --------------------------------------------------------------
    def _finish(self) -> SinkResult:
        if self._batch.items:
            batch, self._batch = self._batch, _Batch()
            if self._fatal is not None:
                self._dead_letter(batch.items, f"not sent: {self._fatal}")
            else:
                try:
                    self._submit(batch)  # behind in-flight batches of the same entities
                except SinkError:
                    pass  # _submit dead-lettered the batch
        self._collect(block=True)
        self._executor.shutdown(wait=True)
        self.client.close()
        result = SinkResult(delivered=self.delivered, failed=len(self.dead_letters),
                            dead_letter_file=self.dead_letters.write())
        result.messages.extend(self.rejections)
        if self._fatal is not None:
            result.messages.insert(0, str(self._fatal))
        return result

    def commit(self) -> SinkResult:
        return self._finish()

    def abort(self) -> SinkResult:
        return self._finish()
