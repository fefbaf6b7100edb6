"""REST sink: proposals to the catalog server in batches, several batches in flight while the
crawl goes on, retried, and nothing lost (what is not delivered ends in the dead-letter file).

Per-entity order is kept: a batch waits for any in-flight batch holding one of its entities.
A batch the server rejects is split in halves until the bad proposals are found, so the good
ones are still delivered and only the bad ones are dead-lettered, with the server's message.
Every proposal is settled exactly once, delivered or dead-lettered: delivered + dead-lettered
= proposals written, whatever happens (a split batch then an outage, a stop mid-delivery).
"""
from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Optional

from connector.stopping import Stopped
from connector.mapping.common import Mcp
from connector.mapping.links import ForeignLinks
from connector.secrets import Redactor
from connector.sinks.base import SinkError, SinkResult
from connector.sinks.dead_letter import DeadLetters
from connector.sinks.file import file_record
from connector.sinks.gms_client import (
    BatchEndpointMissing, GmsAuthError, GmsClient, GmsNotGms, GmsRejected, GmsSettings, GmsUnavailable,
    rest_record,
)

STOP_GRACE_SEC = 3.0  # on a stop, how long batches already on the wire may take to be answered
_POLL_SEC = 0.2


@dataclass(eq=False)
class _Item:
    proposal: Mcp
    system_metadata: dict
    wire: dict
    size: int
    settled: bool = False


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
                 dead_letter_file: str = "dead-letter.json", redactor: Optional[Redactor] = None):
        self.client = GmsClient(settings)
        self.stop = settings.http.stop  # the run's: a stopped delivery stops the run's other waits too
        self.server = self.client.server
        # the recipe's secrets (and the environment's): out of dead-letter reasons and report messages
        self.redactor = redactor or Redactor.from_recipe(None)
        self.max_batch_size = max_batch_size
        self.max_batch_bytes = max_batch_bytes
        self.dead_letters = DeadLetters(dead_letter_file, self.redactor)
        self._executor = ThreadPoolExecutor(max_workers=max_in_flight, thread_name_prefix="gms-send")
        self._max_in_flight = max_in_flight
        self._in_flight: dict[Future, _Batch] = {}
        self._batch = _Batch()
        self._lock = threading.Lock()
        self._use_batch_endpoint = True
        self._fatal: Optional[Exception] = None
        self.delivered = 0
        self.rejections: list[str] = []
        self.rejected_urns: set[str] = set()  # entities with a proposal the server refused for good
        self.rejected_count = 0
        self._result: Optional[SinkResult] = None
        self.foreign_links: Optional[ForeignLinks] = None  # set by ingestion: keep links it does not own

    def __repr__(self) -> str:
        return f"RestSink({self.server!r})"

    # -- settling: each item once, delivered or dead-lettered -------------------------------
    def _delivered(self, items: list[_Item]) -> None:
        with self._lock:
            fresh = [i for i in items if not i.settled]
            for item in fresh:
                item.settled = True
            self.delivered += len(fresh)

    def _dead_letter(self, items: list[_Item], reason: str) -> None:
        with self._lock:
            fresh = [i for i in items if not i.settled]
            for item in fresh:
                item.settled = True
        for item in fresh:
            self.dead_letters.add(file_record(item.proposal, item.system_metadata), reason)

    # -- accepting proposals -------------------------------------------------------------------
    def write(self, proposal: Mcp, system_metadata: dict) -> None:
        wire = rest_record(proposal, system_metadata)
        item = _Item(proposal, system_metadata, wire, len(json.dumps(wire, ensure_ascii=False).encode("utf-8")))
        if self._fatal is not None:
            self._dead_letter([item], f"not sent: {self._fatal}")
            raise SinkError(str(self._fatal))
        full = self._batch
        if full.items and (len(full.items) >= self.max_batch_size or full.size + item.size > self.max_batch_bytes):
            self._batch = _Batch()
        self._batch.items.append(item)
        self._batch.size += item.size
        self._batch.urns.add(proposal.entity_urn)
        if full is not self._batch:
            self._submit(full)

    def _wait(self, futures: list, return_when: str) -> None:
        """Wait for futures, noticing a stop request within a fraction of a second."""
        while futures:
            done, pending = wait(futures, timeout=_POLL_SEC, return_when=return_when)
            if done and return_when == FIRST_COMPLETED or not pending:
                return
            self.stop.check()

    def _submit(self, batch: _Batch) -> None:
        # keep per-entity order, and at most max_in_flight batches (bounded memory)
        try:
            while True:
                self._collect()
                blockers = [f for f, b in self._in_flight.items() if b.urns & batch.urns]
                if blockers:
                    self._wait(blockers, "ALL_COMPLETED")
                    continue
                if len(self._in_flight) >= self._max_in_flight:
                    self._wait(list(self._in_flight), FIRST_COMPLETED)
                    continue
                break
        except BaseException:  # interrupted while waiting (Ctrl-C, SIGTERM): keep the batch
            self._dead_letter(batch.items, "not sent: the run was stopped")
            raise
        if self._fatal is not None:
            self._dead_letter(batch.items, f"not sent: {self._fatal}")
            raise SinkError(str(self._fatal))
        self._in_flight[self._executor.submit(self._deliver, batch.items)] = batch

    def _collect(self) -> None:
        for future in [f for f in self._in_flight if f.done()]:
            del self._in_flight[future]

    # -- delivering (worker threads) ---------------------------------------------------------------
    def _deliver(self, items: list[_Item]) -> None:
        """Deliver or dead-letter every item; never raises."""
        if self._fatal is not None:
            self._dead_letter(items, f"not sent: {self._fatal}")
            return
        try:
            self._send(self._with_foreign_links(items))
        except (GmsAuthError, GmsUnavailable) as exc:
            with self._lock:
                self._fatal = self._fatal or exc
            self._dead_letter(items, str(exc))
        except Stopped:
            self._dead_letter(items, "not sent: the run was stopped")
        except Exception as exc:  # keep the promise of "nothing lost"
            self._dead_letter(items, f"{type(exc).__name__}: {exc}")

    def _with_foreign_links(self, items: list[_Item]) -> list[_Item]:
        """Shared link lists: read what the catalog holds and keep the links ingestion does not
        own (see mapping/links.py). An item whose read is refused is dead-lettered, not written blind."""
        keeper = self.foreign_links
        if keeper is None:
            return items
        sendable: list[_Item] = []
        written: dict[tuple[str, str], Optional[dict]] = {}
        for item in items:
            key = (item.proposal.entity_urn, item.proposal.aspect_name)
            if key[1] in keeper.aspects:
                try:
                    current = written[key] if key in written else self._read_current(*key)
                except GmsRejected as exc:
                    self._dead_letter([item], self.redactor.redact(f"not sent: reading the current {key[1]} "
                                                                   f"from {self.server} failed: {exc}"))
                    continue
                merged = Mcp(key[0], key[1], keeper.merge(key[1], current, item.proposal.aspect))
                written[key] = merged.aspect
                item.proposal, item.wire = merged, rest_record(merged, item.system_metadata)
            sendable.append(item)
        return sendable

    def _read_current(self, urn: str, aspect_name: str) -> Optional[dict]:
        try:
            return self.client.get_aspect(urn, aspect_name)
        except ValueError:  # a 2xx that is not JSON (a login page): nothing sent there would be delivered
            raise GmsNotGms(f"{self.server}/aspects answered something that is not GMS's answer: "
                            "is `server` DataHub's GMS?") from None

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
                self._delivered(items)
                return
        for item in items:
            try:
                self.client.send_one(item.wire)
            except GmsRejected as exc:
                self._reject(item, exc)
            else:
                self._delivered([item])

    def _reject(self, item: _Item, exc: GmsRejected) -> None:
        reason = self.redactor.redact(f"rejected by {self.server}: {exc}")
        self._dead_letter([item], reason)
        with self._lock:
            self.rejected_urns.add(item.proposal.entity_urn)
            self.rejected_count += 1
            if len(self.rejections) < 100:
                self.rejections.append(f"{item.proposal.entity_urn} {item.proposal.aspect_name}: {reason}")

    # -- checkpoints and the end -------------------------------------------------------------------
    def flush(self) -> None:
        """Return once everything written so far is delivered or dead-lettered (on disk)."""
        if self._batch.items:
            batch, self._batch = self._batch, _Batch()
            self._submit(batch)
        self._wait(list(self._in_flight), "ALL_COMPLETED")
        self._collect()
        self._write_dead_letters()
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

    def _write_dead_letters(self) -> Optional[str]:
        try:
            return self.dead_letters.write()
        except OSError as exc:
            raise SinkError(self._dead_letters_lost(exc)) from None

    def _dead_letters_lost(self, exc: OSError) -> str:
        return (f"dead-letter file {self.dead_letters.path} cannot be written ({exc.strerror or exc}): "
                f"{len(self.dead_letters)} proposal(s) not delivered are not on disk")

    def _drain(self) -> bool:
        """Deliver what is pending; False when a stop cut that short."""
        try:
            if self._batch.items:
                batch, self._batch = self._batch, _Batch()
                if self._fatal is not None:
                    self._dead_letter(batch.items, f"not sent: {self._fatal}")
                else:
                    try:
                        self._submit(batch)  # behind in-flight batches of the same entities
                    except SinkError:
                        pass  # _submit dead-lettered the batch
            self._wait(list(self._in_flight), "ALL_COMPLETED")
            return True
        except (Stopped, KeyboardInterrupt):
            return False

    def _abandon(self) -> None:
        """A stop: batches on the wire get a short grace, then whatever is unsettled is dead-lettered
        (delivery unknown: re-sending an UPSERT is harmless)."""
        self.stop.request("stopped")
        wait(list(self._in_flight), timeout=STOP_GRACE_SEC)
        for batch in [self._batch, *self._in_flight.values()]:
            self._dead_letter(batch.items, "not sent, or its delivery unknown: the run was stopped")
        self._batch = _Batch()
        self._in_flight.clear()

    def _finish(self) -> SinkResult:
        if self._result is None:
            self._result = self._end()
        return self._result

    def _end(self) -> SinkResult:
        started = time.monotonic()
        stopped = self.stop.requested() or not self._drain()
        if stopped:
            self._abandon()
        # joined also after a stop: a send ends within the HTTP layer's stop grace (http.STOP_GRACE_SEC)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.client.close()
        result = SinkResult(delivered=self.delivered, failed=len(self.dead_letters))
        result.messages.extend(self.rejections)
        # every proposal not delivered was refused for good (no outage, no stop): the run itself went through
        if not stopped and self._fatal is None and self.rejected_count == len(self.dead_letters):
            result.only_refused = frozenset(self.rejected_urns)
        if self._fatal is not None:
            result.messages.insert(0, self.redactor.redact(str(self._fatal)))
        if stopped:
            result.messages.insert(0, f"stopped during delivery ({time.monotonic() - started:.1f} s in)")
        try:
            result.dead_letter_file = self.dead_letters.write()
        except OSError as exc:
            result.error = self._dead_letters_lost(exc)
        return result

    def commit(self) -> SinkResult:
        return self._finish()

    def abort(self) -> SinkResult:
        return self._finish()
