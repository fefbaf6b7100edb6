"""Sinks deliver proposals. `build_sink` picks one from the recipe's sink section."""
from __future__ import annotations

from connector.sinks.base import Sink, SinkError
from connector.sinks.file import FileSink


def build_sink(section) -> Sink:
    if section.type == "file":
        return FileSink(section.config.filename)
    raise SinkError(f"sink.type: unknown sink {section.type!r}")


__all__ = ["Sink", "SinkError", "build_sink", "FileSink"]
