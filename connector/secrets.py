"""Secrets kept out of every text the connector prints or writes.

    redactor = Redactor.from_recipe(recipe)    # the recipe's secrets and those of the environment
    redactor.redact(text) -> str               # every known secret -> ***, user:password@ out of URLs
    redact_url(url) -> str                     # a URL without its user:password@ part
    url_credentials(url) -> (user, password)   # percent-decoded, for basic auth (MLflow and GMS alike)

A password in a URL may hold `/`, `#`, `?` or `@` unencoded (generated secrets often do):
the user information is taken to end at the last `@` that is followed by a host name, so
a doubtful URL loses too much rather than too little.
"""
from __future__ import annotations

import base64
import json
import os
import re
from typing import Any, Iterable, Mapping, Optional
from urllib.parse import quote, quote_plus, unquote

MASK = "***"
# Shorter values are not searched for in free text (they would mask ordinary words);
# user information in URLs is removed whatever its length.
MIN_SECRET_LENGTH = 4
SECRET_KEYS = frozenset({"password", "token"})
SECRET_ENV_VARS = (
    "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN", "DATAHUB_GMS_TOKEN", "DATABRICKS_TOKEN",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_CONNECTION_STRING",
)
URL_ENV_VARS = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# What may follow the @ that ends user information: a host (or [IPv6]) and an optional port,
# then anything that cannot continue a host name.
_HOST_AFTER_AT = re.compile(r"(?:\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9._-]+)(?::\d*)?(?![A-Za-z0-9._@:%~-])")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def split_userinfo(url: str) -> tuple[str, Optional[str]]:
    """(the URL without user information, the raw user information or None)."""
    if "@" not in url:  # nothing could end user information (most URLs: every run's artifact URI)
        return url, None
    scheme = _SCHEME.match(url)
    if not scheme:  # `user:password@host:5000` typed without a scheme still holds a password
        start = 0 if url[:1] not in ("/", ".", "~", "") else len(url)
    elif url[scheme.end():].startswith("/"):  # no authority (file:///)
        return url, None
    else:
        start = scheme.end()
    rest = url[start:]
    cut = None
    for index in (i for i, c in enumerate(rest) if c == "@"):
        if _HOST_AFTER_AT.match(rest, index + 1) and (scheme or "/" not in rest[:index]):
            cut = index
    if cut is None:
        return url, None
    return url[:start] + rest[cut + 1:], rest[:cut]


def redact_url(url: str) -> str:
    """The URL without any user:password@ part, for messages, logs and links."""
    return split_userinfo(url)[0]


def strip_url_credentials(text: str) -> str:
    """`text` with the user:password@ part of every URL in it removed (MLflow's own data holds
    URLs too: an FTP artifact store, a dataset read over https with a password)."""
    if "@" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda found: redact_url(found.group(0)), text)


def url_credentials(url: str) -> Optional[tuple[str, str]]:
    """(user, password) from a URL's user information, percent-decoded; None without a user."""
    userinfo = split_userinfo(url)[1]
    if not userinfo:
        return None
    user, _, password = userinfo.partition(":")
    return unquote(user), unquote(password)


def _spellings(secret: str) -> set[str]:
    """The ways a secret can show up in text: as is, percent-encoded or -decoded, JSON-escaped."""
    forms = {secret, unquote(secret), quote(secret, safe=""), quote(secret), quote_plus(secret),
             json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


def _secret_value(value: Any) -> Optional[str]:
    if hasattr(value, "get_secret_value"):  # pydantic SecretStr
        value = value.get_secret_value()
    return value if isinstance(value, str) and value else None


def secrets_in(tree: Any, key: str = "") -> set[str]:
    """Secret values in a recipe tree (parsed YAML, or a recipe's model_dump()): passwords,
    tokens, extra header values, and the user information of every URL."""
    found: set[str] = set()
    if isinstance(tree, Mapping):
        found |= _basic_auth(_secret_value(tree.get("username")), _secret_value(tree.get("password")))
        for k, v in tree.items():
            if k == "extra_headers" and isinstance(v, Mapping):
                found.update(s for s in map(_secret_value, v.values()) if s)
            else:
                found |= secrets_in(v, str(k))
    elif isinstance(tree, (list, tuple)):
        for item in tree:
            found |= secrets_in(item, key)
    else:
        value = _secret_value(tree)
        if value and key in SECRET_KEYS:
            found.add(value)
        elif value and "://" in value:
            found |= _url_secrets(value)
    return found


def _dig(tree: Any, *keys: str) -> Any:
    for key in keys:
        tree = tree.get(key) if isinstance(tree, Mapping) else None
    return tree


def _basic_auth(user: Optional[str], password: Optional[str]) -> set[str]:
    """What a basic-auth header carries for these credentials (a server may echo the header)."""
    return {base64.b64encode(f"{user}:{password}".encode()).decode()} if user and password else set()


def _url_secrets(url: str) -> set[str]:
    userinfo = split_userinfo(url)[1]
    if not userinfo:
        return set()
    user, _, password = userinfo.partition(":")
    found = {password, unquote(password)} if password else set()
    if password:  # what a basic-auth header carries
        found.add(base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode())
    return {s for s in found if s}


def urls_with_passwords(tree: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    """(location, URL without credentials) of every URL value that holds a password written as is
    (`user:password@`); a `${VAR}` in its place is only the variable's name."""
    found: list[tuple[tuple, str]] = []
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            found += urls_with_passwords(value, path + (key,))
    elif isinstance(tree, (list, tuple)):
        for index, item in enumerate(tree):
            found += urls_with_passwords(item, path + (index,))
    elif isinstance(tree, str) and "://" in tree:
        password = (split_userinfo(tree)[1] or "").partition(":")[2]
        if password and not re.fullmatch(r"\$\{?\w+\}?", password):
            found.append((path, redact_url(tree)))
    return found


class Redactor:
    """Replaces known secrets in any text, and removes user information from URLs in it."""

    def __init__(self, secrets: Iterable[str] = ()):
        self.secrets = frozenset(s for s in secrets if s)  # as given (e.g. to register with DataHub's masking)
        spellings: set[str] = set()
        for secret in self.secrets:
            if secret:
                spellings |= _spellings(secret)
        ordered = sorted(spellings, key=len, reverse=True)  # a longer spelling wins over its parts
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self.count = len(ordered)

    @classmethod
    def from_recipe(cls, recipe: Any = None, environ: Optional[Mapping[str, str]] = None) -> "Redactor":
        """From a Recipe (or a parsed recipe tree) and the environment variables that hold secrets."""
        environ = os.environ if environ is None else environ
        tree = recipe.model_dump() if hasattr(recipe, "model_dump") else recipe
        secrets = secrets_in(tree) if tree is not None else set()
        secrets.update(environ[name] for name in SECRET_ENV_VARS if environ.get(name))
        user = _secret_value(_dig(tree, "source", "config", "username")) or environ.get("MLFLOW_TRACKING_USERNAME")
        secrets |= _basic_auth(user, environ.get("MLFLOW_TRACKING_PASSWORD"))
        for name in URL_ENV_VARS:
            secrets |= _url_secrets(environ.get(name, ""))
        return cls(secrets)

    def redact(self, text: str) -> str:
        if not text:
            return text
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)

    def redact_url(self, url: str) -> str:
        return self.redact(redact_url(url))

    def redact_tree(self, tree: Any) -> Any:
        """Every string of a JSON-like tree (e.g. a report's as_dict()), keys included."""
        if isinstance(tree, str):
            return self.redact(tree)
        if isinstance(tree, Mapping):
            return {self.redact_tree(k): self.redact_tree(v) for k, v in tree.items()}
        if isinstance(tree, (list, tuple)):
            return [self.redact_tree(v) for v in tree]
        return tree
