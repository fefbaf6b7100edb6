"""Reading a proposal file back (a file sink's output, a dead-letter file) for `send`:
every record is checked before anything is sent, and a bad one is named by its index,
URN and aspect, with the path of the bad value inside it."""
from __future__ import annotations

import json
import re
from typing import Any, Optional

_URN = re.compile(r"^urn:li:([A-Za-z][A-Za-z0-9]*):(\S.*)$", re.DOTALL)
_ASPECT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")


class ProposalFileError(ValueError):
    """The file, or one record of it, is not a proposal we can send."""


class _NonFinite:
    """NaN / Infinity where JSON allows no such thing: kept as a marker to name where it is."""

    def __init__(self, spelling: str):
        self.spelling = spelling


def _find_non_finite(value: Any, where: str) -> Optional[str]:
    if isinstance(value, _NonFinite):
        return f"{value.spelling} at {where}"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _find_non_finite(item, f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]")
        if found:
            return found
    return None


def _loads(text: str):
    return json.loads(text, parse_constant=_NonFinite)


def urn_problem(urn: Any) -> Optional[str]:
    """Why `urn` is not a URN the catalog can take, or None."""
    if not isinstance(urn, str):
        return f"entityUrn is {type(urn).__name__}, not a string"
    match = _URN.match(urn)
    if not match or urn != urn.strip():
        return f"entityUrn {urn[:200]!r} is not a URN (urn:li:TYPE:ID)"
    key, depth = match.group(2), 0
    for char in key:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            break
    if depth != 0 or (key.startswith("(") != key.endswith(")")):
        return f"entityUrn {urn[:200]!r} has unbalanced parentheses"
    return None


def _aspect_value(aspect: Any) -> tuple[Optional[dict], str]:
    """(the aspect as an object, or None; the problem when None)."""
    if not isinstance(aspect, dict):
        return None, "aspect is missing or not an object"
    if "json" in aspect:
        value = aspect["json"]
    elif isinstance(aspect.get("value"), str):
        try:
            value = _loads(aspect["value"])
        except ValueError as exc:
            return None, f"aspect.value is not JSON ({exc})"
    else:
        return None, "aspect has neither 'json' nor a 'value' string"
    if not isinstance(value, dict):
        return None, "the aspect is not a JSON object"
    return value, ""


def record_problem(record: Any) -> Optional[str]:
    """Why `record` is not a proposal we can send, or None."""
    if not isinstance(record, dict):
        return f"not an object but {type(record).__name__}"
    problem = urn_problem(record.get("entityUrn"))
    if problem:
        return problem
    entity_type = record["entityUrn"].split(":", 3)[2]
    if "entityType" in record and record["entityType"] != entity_type:
        return f"entityType {record['entityType']!r} does not match the URN's type {entity_type!r}"
    name = record.get("aspectName")
    if not isinstance(name, str) or not _ASPECT_NAME.match(name):
        return f"aspectName {name!r} is not an aspect name"
    if record.get("changeType", "UPSERT") != "UPSERT":
        return f"changeType {record['changeType']!r}: only UPSERT proposals can be sent"
    if not isinstance(record.get("systemMetadata") or {}, dict):
        return "systemMetadata is not an object"
    value, problem = _aspect_value(record.get("aspect"))
    if value is None:
        return problem
    non_finite = _find_non_finite(value, "aspect") or _find_non_finite(record.get("systemMetadata"), "systemMetadata")
    if non_finite:
        return f"{non_finite}: JSON has no NaN or Infinity (the catalog would refuse it)"
    return None


def read_proposal_file(filename: str) -> list[dict]:
    """The records of a proposal file, each checked. Raises OSError, ProposalFileError."""
    with open(filename, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProposalFileError(f"{filename} is not UTF-8 text (byte at offset {exc.start})") from None
    try:
        data = _loads(text)
    except json.JSONDecodeError as exc:
        raise ProposalFileError(f"{filename} is not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") \
            from None
    except RecursionError:
        raise ProposalFileError(f"{filename} nests too deeply to be a proposal file") from None
    if not isinstance(data, list):
        raise ProposalFileError(f"{filename}: expected a JSON array of proposals, found {type(data).__name__}")
    for index, record in enumerate(data):
        problem = record_problem(record)
        if problem:
            urn = record.get("entityUrn") if isinstance(record, dict) else None
            aspect = record.get("aspectName") if isinstance(record, dict) else None
            named = f" ({urn!s:.200} {aspect})" if isinstance(urn, str) and isinstance(aspect, str) else ""
            raise ProposalFileError(f"{filename}: record {index}{named}: {problem}; nothing was sent")
    return data
