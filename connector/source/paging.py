"""Paged listings: walk a listing page by page, refuse a page token seen before (a server that
repeats it would be paged forever), and keep the next request in flight while the caller works
on the current page."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from connector.source.backend import Page
from connector.source.errors import SourceError


class PageLoopError(SourceError):
    """A listing answered a page token it had already answered: paging it would never end."""


@dataclass(frozen=True)
class Listing:
    """One paged listing: `fetch(token)` gives a page; `what` names it in errors."""
    what: str
    fetch: Callable[[Optional[str]], Page]


class _TokenGuard:
    def __init__(self, listing: Listing):
        self.listing = listing
        self.seen: set[str] = set()

    def next_token(self, token: Optional[str]) -> Optional[str]:
        if not token:
            return None
        if token in self.seen:
            raise PageLoopError(f"{self.listing.what}: the server answered the page token {token[:40]!r} "
                                f"a second time (after {len(self.seen)} page(s)); stopped instead of paging forever")
        self.seen.add(token)
        return token


def paged(listing: Listing) -> Iterator[dict]:
    guard = _TokenGuard(listing)
    token: Optional[str] = None
    while True:
        items, next_token = listing.fetch(token)
        yield from items
        token = guard.next_token(next_token)
        if token is None:
            return


def prefetched(listings: list[Listing], executor: ThreadPoolExecutor) -> Iterator[tuple[int, list]]:
    """Walk listings one after another, keeping the next request in flight while the caller
    maps the current page; yields (listing index, page). At most two pages are in memory."""
    if not listings:
        return
    index = 0
    guard = _TokenGuard(listings[0])
    pending: Optional[Future] = executor.submit(listings[0].fetch, None)
    while pending is not None:
        items, token = pending.result()
        current = index
        token = guard.next_token(token)
        if token:
            pending = executor.submit(listings[index].fetch, token)
        elif index + 1 < len(listings):
            index += 1
            guard = _TokenGuard(listings[index])
            pending = executor.submit(listings[index].fetch, None)
        else:
            pending = None
        yield current, items
