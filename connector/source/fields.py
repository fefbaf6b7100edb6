"""Reading one field of an item MLflow sent, strictly: a wrong type, a time that is not a number, text
that is not valid (a lone surrogate) is named; `_parsing` turns it into a MalformedRecord naming the
item (that record fails, the crawl goes on)."""
from __future__ import annotations

from typing import Any, Optional


class MalformedRecord(ValueError):
    """An item whose fields are not what MLflow sends (a tag list as an object, a time of
    "yesterday", a lone surrogate in a name): that record fails, the crawl goes on."""

    def __init__(self, what: str, problem: str):
        super().__init__(f"{what}: {problem}")
        self.what = what
        self.problem = problem


class _Bad(ValueError):
    """One field's problem, turned into a MalformedRecord naming the item by `_parsing`."""


_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}


def json_kind(value: Any) -> str:
    """What a JSON value is, in words (not Python's type names)."""
    return _KINDS.get(type(value), "a number" if isinstance(value, (int, float)) else "something else")


_kind = json_kind


def _text(value: Any, name: str) -> str:
    """A string field ("" when absent); numbers are taken as MLflow's ids sometimes come."""
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise _Bad(f"{name} is {_kind(value)}, not a string")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Bad(f"{name} holds a character that is not valid text (a lone surrogate, "
                       f"position {_bad_position(value)})") from None
    return value


def _bad_position(value: str) -> int:
    return next(i for i, c in enumerate(value) if 0xD800 <= ord(c) <= 0xDFFF)


def _list(value: Any, name: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Bad(f"{name} is {_kind(value)}, not a list")
    return value


def _object(value: Any, name: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Bad(f"{name} is {_kind(value)}, not an object")
    return value


def _pairs(items: Any, name: str) -> dict[str, str]:
    """MLflow's [{"key": ..., "value": ...}] lists (tags, params) as a dict."""
    if type(items) is list:  # the common case, checked in bulk; anything odd takes the named checks
        try:
            quick = {item["key"]: item["value"] for item in items}
        except (TypeError, KeyError):
            quick = None
        # (a key given twice keeps only its last value here: the checks look at every item)
        if quick is not None and len(quick) == len(items) and _plain_texts(quick):
            return quick
    out: dict[str, str] = {}
    for index, item in enumerate(_list(items, name)):
        _keyed_item(item, f"{name}[{index}]")
        out[_text(item["key"], f"{name}[{index}].key")] = _text(item.get("value", ""), f"{name}[{index}].value")
    return out


def _keyed_item(item: Any, where: str) -> dict:
    """One {key, value} item of MLflow's lists (tags, params, metrics)."""
    if not isinstance(item, dict) or "key" not in item:
        raise _Bad(f"{where} is {_kind(item)} without a key, not {{key, value}}")
    return item


def _plain_texts(pairs: dict) -> bool:
    """Every key and value a string of ASCII text (no lone surrogate to look for)."""
    return all(type(k) is str and type(v) is str and k.isascii() and v.isascii() for k, v in pairs.items())


def _tags(items: Any, name: str = "tags") -> dict[str, str]:
    return _pairs(items, name)


def _int(value: Any, name: str = "a time") -> Optional[int]:
    """A whole number (times in ms): MLflow sends them as JSON numbers or strings of digits."""
    if value in (None, ""):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    kind = "a whole number" if name == "step" else "a time in milliseconds"
    raise _Bad(f"{name} is {str(value)[:40]!r}, not {kind}")


def _parsing(what: str, parse, d: Any):
    """Parse one item; any field that is not MLflow's fails it as a MalformedRecord naming it."""
    if not isinstance(d, dict):
        raise MalformedRecord(what, f"is {_kind(d)}, not an object")
    try:
        return parse(d)
    except _Bad as exc:
        raise MalformedRecord(what, str(exc)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedRecord(what, f"a field is not what MLflow sends ({exc})") from None


def _name_of(value: Any) -> str:
    """An item's id or name for messages: printable even when it is not valid text."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8") if value is not None else "?"
