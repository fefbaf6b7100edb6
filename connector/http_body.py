"""Reading an answer's body for connector/http.py: decoded a bounded piece at a time (the size cap
counts decoded bytes as they are decoded), and what went wrong on the wire, in words."""
from __future__ import annotations

import zlib
from typing import Iterator

import requests

_CHUNK = 64 * 1024


def _read_some(raw, decode: bool = True) -> bytes:
    """What has arrived, up to a chunk, without waiting for a full chunk (a dripping server must
    not hold a read past the deadline)."""
    try:
        return raw.read1(_CHUNK, decode_content=decode)
    except TypeError:  # a stand-in response (recorded traffic replayed) without urllib3's read1
        return raw.read(_CHUNK)


def _decompressor(encoding: str):
    """A zlib decompressor for a Content-Encoding we decode ourselves; None for identity."""
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    return None


def decoded(raw, encoding: str) -> Iterator[bytes]:
    """The body, decoded a bounded piece at a time: a small compressed answer that expands to
    gigabytes (a gzip bomb) is counted as it expands, never decoded whole first. gzip and
    deflate are decoded here; any other encoding (which we do not ask for) by urllib3."""
    encoding = encoding.strip().lower()
    if _decompressor(encoding) is None:
        while chunk := _read_some(raw, decode=encoding not in ("", "identity")):
            yield chunk
        return
    inflater = _Inflater(encoding)
    while not inflater.done and (data := _read_some(raw, decode=False)):
        yield from inflater.pieces(data)


class _Inflater:
    """gzip or deflate, at most _CHUNK bytes of output per step: several gzip members one after
    the other, raw deflate (as some servers send it), bytes after a complete answer ignored."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        self.z = _decompressor(encoding)
        self.first = True
        self.members = 0
        self.done = False

    def _step(self, data: bytes) -> bytes:
        try:
            try:
                return self.z.decompress(data, _CHUNK)
            except zlib.error:
                if not (self.first and self.encoding == "deflate"):
                    raise
                self.z = zlib.decompressobj(-zlib.MAX_WBITS)
                return self.z.decompress(data, _CHUNK)
        except zlib.error:
            if not self.members:
                raise ValueError("the compressed answer is corrupt") from None
            self.done = True  # trailing bytes after a complete answer, as urllib3 ignores them
            return b""
        finally:
            self.first = False

    def pieces(self, data: bytes) -> Iterator[bytes]:
        while data and not self.done:
            piece = self._step(data)
            data = self.z.unconsumed_tail
            if self.z.eof:
                self.members += 1
                if self.z.unused_data:  # another gzip member follows (unused_data: all after the end)
                    data, self.z = self.z.unused_data, _decompressor(self.encoding)
            if piece:
                yield piece
            while not data and len(piece) == _CHUNK:  # output the decompressor still holds
                piece = self.z.decompress(b"", _CHUNK)
                if piece:
                    yield piece


def transport_problem(exc: BaseException) -> str:
    """What went wrong on the wire, in words (never a library's class name)."""
    text, kind = str(exc), type(exc).__name__
    if isinstance(exc, requests.exceptions.SSLError) or "SSL" in kind:
        return "TLS handshake failed (certificate or protocol; see `verify`)"
    if isinstance(exc, requests.exceptions.TooManyRedirects):
        return "too many redirects (a login page going round?)"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.Timeout) or "Timeout" in kind:
        return "read timed out"
    for marks, words in _TRANSPORT_WORDS:
        if any(mark in text for mark in marks):
            return words
    if isinstance(exc, ValueError) and not isinstance(exc, requests.exceptions.RequestException):
        return text or "answer could not be decoded"
    return "connection broken before the answer was complete"


_TRANSPORT_WORDS = (  # (what a library's message holds, what we say)
    (("NameResolution", "Name or service not known", "nodename nor servname"), "host name not resolved"),
    (("Connection refused",), "connection refused"),
    (("Invalid URL", "No connection adapters"), "invalid URL"),
    (("Max retries",), "connection failed"),
)
