"""Pieces every recipe section uses: strict models, URL checks, DataHub's fabric types."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict

from connector.secrets import redact_url

FABRIC_TYPES = (
    "DEV", "TEST", "QA", "UAT", "EI", "PRE", "STG", "NON_PROD", "PROD", "CORP",
    "RVW", "PRD", "TST", "SIT", "SBX", "SANDBOX",
)


def fabric(value: str) -> str:
    """An env (fabric type) as DataHub spells it, or a ValueError naming the known ones."""
    if value.upper() not in FABRIC_TYPES:
        raise ValueError(f"unknown env {value!r}; one of {', '.join(FABRIC_TYPES)}")
    return value.upper()


class Strict(BaseModel):
    """A recipe section: an unknown key is an error."""

    model_config = ConfigDict(extra="forbid")


_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:\d+(/.*)?$")


def check_url(value: str, http_only: bool = False) -> str:
    """A URL whose port (if any) is a number and, for servers, with an http(s) scheme.
    Messages show the URL without its user:password@ part."""
    shown = redact_url(value)
    if _HOST_PORT.match(shown):
        raise ValueError(f"{shown!r} has no scheme: write http://{shown} (or https://) for a server")
    if http_only and not shown.lower().startswith(("http://", "https://")):
        raise ValueError(f"expected an http(s):// URL, got {shown!r}")
    if "://" in shown and not shown.lower().startswith(("file:", "sqlite:")):
        try:
            parts = urlsplit(shown)
            _ = parts.port  # raises on a port that is not a number in 0-65535
        except ValueError as exc:
            raise ValueError(f"invalid URL {shown!r}: {exc}") from None
        if http_only and not parts.hostname:
            raise ValueError(f"no host in {shown!r}")
    return value
