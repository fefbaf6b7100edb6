"""${NAME} and ${NAME:-default} in a recipe's values: replaced from the environment, remembering
which field each variable fed (so that errors name the variable, never its value)."""
from __future__ import annotations

import os
import re
from typing import Any, Callable, Optional

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class RecipeError(Exception):
    """A recipe that cannot be used; the message names the field."""


def expand_env(value: Any, path: str = "", environ=None, used: Optional[dict] = None) -> Any:
    """Replace ${NAME} / ${NAME:-default} in every string of a parsed YAML tree. `used`, when
    given, collects {recipe path: {NAME: value}} of every variable that fed a value."""
    environ = os.environ if environ is None else environ
    if isinstance(value, dict):
        return {k: expand_env(v, f"{path}.{k}" if path else str(k), environ, used) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{path}[{i}]", environ, used) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def unset(name: str) -> str:
        raise RecipeError(f"{path}: environment variable {name} is not set")

    def fed(name: str) -> None:
        if used is not None:
            used.setdefault(path, {})[name] = environ[name]

    return expand_text(value, environ, unset, fed)


def expand_text(text: str, environ=None, unset: Optional[Callable[[str], str]] = None,
                fed: Optional[Callable[[str], None]] = None) -> str:
    """${NAME}, ${NAME:-default} and $$ in one string. A NAME that is not set and has no default
    becomes `unset(NAME)` (a RecipeError naming it when not given); `fed(NAME)` is told of each
    variable whose value was used."""
    environ = os.environ if environ is None else environ

    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in environ:
            if fed is not None:
                fed(name)
            return environ[name]
        if default is not None:
            return default
        if unset is None:
            raise RecipeError(f"environment variable {name} is not set")
        return unset(name)

    return _ENV_REF.sub(substitute, text)
