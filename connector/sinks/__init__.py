"""Sinks deliver proposals: a file (connector.sinks.file) or the catalog server (connector.sinks.rest).
connector.config.settings.build_sink picks one from the recipe's sink section."""
from connector.sinks.base import Sink, SinkError, SinkResult

__all__ = ["Sink", "SinkError", "SinkResult"]
