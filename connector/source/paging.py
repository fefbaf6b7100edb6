"""Paged listings: walk a listing page by page, refuse a page token seen before (a server that
repeats it would be paged forever), and keep the next request in flight while the caller works
on the current page."""
from __future__ import annotations

import json
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


MAX_PAGES = 100_000  # of one listing: 100 million runs at 1,000 a page
# Empty pages in a row that still carry a (new) token: Databricks-hosted registries answer some
# while they filter server-side; a listing that goes on like that past this many is stuck.
MAX_EMPTY_PAGES = 100


def _page_signature(items: list) -> tuple:
    if not items:
        return (0,)
    return len(items), json.dumps(items[0], sort_keys=True), json.dumps(items[-1], sort_keys=True)


class _TokenGuard:
    """Refuses what would page forever: a token answered before, the same (non-empty) page again
    under a new token, more empty pages in a row than MAX_EMPTY_PAGES, or more pages than any
    real listing has."""

    def __init__(self, listing: Listing):
        self.listing = listing
        self.seen: set[str] = set()
        self.last_page: Optional[tuple] = None
        self.empty_in_a_row = 0

    def _loop(self, what: str) -> PageLoopError:
        return PageLoopError(f"{self.listing.what}: {what} (after {len(self.seen)} page(s)); "
                             "stopped instead of paging forever")

    def next_token(self, token: Optional[str], items: list) -> Optional[str]:
        if not token:
            return None
        if token in self.seen:
            raise self._loop(f"the server answered the page token {token[:40]!r} a second time")
        page = _page_signature(items)
        self.empty_in_a_row = 0 if items else self.empty_in_a_row + 1
        if items and page == self.last_page:
            raise self._loop("the server answered the same page again under a new page token")
        if self.empty_in_a_row > MAX_EMPTY_PAGES:
            raise self._loop(f"more than {MAX_EMPTY_PAGES} empty pages in a row, each with a new page token")
        if len(self.seen) >= MAX_PAGES:
            raise self._loop(f"more than {MAX_PAGES:,} pages")
        self.seen.add(token)
        self.last_page = page
        return token


def paged(listing: Listing) -> Iterator[dict]:
    guard = _TokenGuard(listing)
    token: Optional[str] = None
    while True:
        items, next_token = listing.fetch(token)
        yield from items
        token = guard.next_token(next_token, items)
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
        token = guard.next_token(token, items)
        if token:
            pending = executor.submit(listings[index].fetch, token)
        elif index + 1 < len(listings):
            index += 1
            guard = _TokenGuard(listings[index])
            pending = executor.submit(listings[index].fetch, None)
        else:
            pending = None
        yield current, items
