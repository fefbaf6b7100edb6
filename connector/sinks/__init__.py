"""Sinks deliver proposals. `build_sink` picks one from the recipe's sink section."""
from __future__ import annotations

from connector.sinks.base import Sink, SinkError, SinkResult
from connector.sinks.file import FileSink


def build_sink(section) -> Sink:
    if section.type == "file":
        return FileSink(section.config.filename)
    if section.type == "datahub-rest":
        from connector.sinks.gms_client import GmsSettings
        from connector.sinks.rest import RestSink

        c = section.config
        verify = False if c.disable_ssl_verification else (c.ca_certificate_path or True)
        settings = GmsSettings(server=c.server, token=c.token.get_secret_value() if c.token else None,
                               timeout_sec=c.timeout_sec, max_retries=c.max_retries,
                               retry_backoff_sec=c.retry_backoff_sec, verify=verify,
                               extra_headers=dict(c.extra_headers))
        return RestSink(settings, max_batch_size=c.max_batch_size, max_batch_bytes=c.max_batch_bytes,
                        max_in_flight=c.max_in_flight, dead_letter_file=c.dead_letter_file)
    raise SinkError(f"sink.type: unknown sink {section.type!r}")


__all__ = ["Sink", "SinkError", "SinkResult", "build_sink", "FileSink"]
