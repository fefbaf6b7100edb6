"""The recipe reference, written from the recipe's pydantic models (connector.config.recipe): every key,
its type, default and description, so the docs cannot drift from what the connector accepts.

    python -m connector.config.recipe_reference            # rewrites docs/recipe-reference.md and recipes/reference.yml
    python -m connector.config.recipe_reference --check    # exit 1 when either differs from the models

A field's description is its documentation; a model's docstring introduces its section."""
from __future__ import annotations

import argparse
import json
import sys
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from connector.config import recipe

ROOT = Path(__file__).resolve().parents[2]
MARKDOWN = ROOT / "docs" / "recipe-reference.md"
YAML = ROOT / "recipes" / "reference.yml"
GENERATED = "generated from connector/config/recipe*.py by `make reference`; do not edit by hand"


@dataclass(frozen=True)
class Key:
    path: str            # e.g. source.config.env
    type_name: str
    default: Any         # PydanticUndefined: required
    description: str
    model: Optional[Any] = None  # a nested section


def _union_name(args: list, optional: bool) -> str:
    if len(args) > 1 and all(_nested_model(a) for a in args):  # a discriminated union of sections
        return "section: " + " or ".join(f"type {typing.get_args(a.model_fields['type'].annotation)[0]}"
                                         for a in args)
    inner = " | ".join(_type_name(a) for a in args)
    return f"{inner} (optional)" if optional else inner


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType):
        return _union_name(args, len(args) < len(typing.get_args(annotation)))
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_type_name(a) for a in typing.get_args(annotation))}]"
    if annotation is SecretStr:
        return "secret string"
    return "section" if _nested_model(annotation) else getattr(annotation, "__name__", str(annotation))


def _nested_model(annotation: Any) -> Optional[type]:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
        return value.model_dump() if isinstance(value, BaseModel) else value
    return field.default


def keys(model: type[BaseModel], prefix: str = "") -> Iterator[Key]:
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        nested = _nested_model(field.annotation)
        yield Key(path, _type_name(field.annotation), _default(field), " ".join((field.description or "").split()),
                  nested)
        if nested is not None and typing.get_origin(field.annotation) is not list:
            yield from keys(nested, f"{path}.")


SECTIONS: list[tuple[str, str, type[BaseModel]]] = [
    ("Top level", "", recipe.Recipe),
    ("source (type: mlflow)", "source.config.", recipe.MlflowSourceConfig),
    ("sink (type: file)", "sink.config.", recipe.FileSinkConfig),
    ("sink (type: datahub-rest)", "sink.config.", recipe.DatahubRestSinkConfig),
    ("state", "state.", recipe.StateConfig),
    ("a deployment rule (source.config.deployments[])", "", recipe.DeploymentRuleConfig),
]
_TOP_SECTIONS = {"source", "sink", "state"}


def _shown(value: Any) -> str:
    if value is PydanticUndefined:
        return "required"
    return json.dumps(value, ensure_ascii=False)


def markdown() -> str:
    lines = ["# Recipe reference", "", f"<!-- {GENERATED} -->", "",
             "Every key the connector accepts, with its type and default. Values may use `${VAR}` or "
             "`${VAR:-default}` (write `$$` for a literal `$`); an unknown key is an error naming its path "
             "(exit code 2). A copyable recipe with every key: [`recipes/reference.yml`](../recipes/reference.yml).",
             ""]
    for title, prefix, model in SECTIONS:
        lines += [f"## {title}", ""]
        doc = " ".join((model.__doc__ or "").split())
        if doc and model is not recipe.Recipe:
            lines += [doc, ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for key in keys(model, prefix):
            if model is recipe.Recipe and key.path.split(".")[0] in _TOP_SECTIONS and key.path.count("."):
                continue  # documented in its own section
            cells = [c.replace("|", "\\|") for c in (key.type_name, _shown(key.default), key.description)]
            lines.append(f"| `{key.path}` | {cells[0]} | `{cells[1]}` | {cells[2]} |")
        lines.append("")
    return "\n".join(lines)


def _yaml_value(value: Any) -> str:
    if value is PydanticUndefined or value is None:
        return "null"
    return json.dumps(value, ensure_ascii=False)


def _yaml_lines(model: type[BaseModel], indent: int, overrides: dict) -> list[str]:
    pad = " " * indent
    out: list[str] = []
    for name, field in model.model_fields.items():
        description = " ".join((field.description or "").split())
        if description:
            out += [pad + "# " + line for line in textwrap.wrap(description, 100 - indent)]
        nested = _nested_model(field.annotation)
        value = overrides.get(name, _default(field))
        if nested is not None and typing.get_origin(field.annotation) is not list and not isinstance(value, str):
            out.append(f"{pad}{name}:")
            out += _yaml_lines(nested, indent + 2, value if isinstance(value, dict) else {})
        else:
            out.append(f"{pad}{name}: {_yaml_value(value)}")
    return out


def yaml_reference() -> str:
    lines = [f"# Every recipe key with its default ({GENERATED}).",
             "# Values may use ${ENV_VAR} or ${ENV_VAR:-default}; write $$ for a literal $.",
             "# An unknown key is an error naming its path (exit 2); docs/recipe-reference.md: the same as tables.",
             "pipeline_name: mlflow-prod", "", "source:", "  type: mlflow", "  config:"]
    lines += _yaml_lines(recipe.MlflowSourceConfig, 4, {"tracking_uri": "http://mlflow.internal:5000"})
    lines += ["", "sink:", "  type: file", "  config:"]
    lines += _yaml_lines(recipe.FileSinkConfig, 4, {"filename": "out/mlflow.json"})
    lines += ["", "# Or straight into DataHub's GMS (instead of the file sink above):", "# sink:",
              "#   type: datahub-rest", "#   config:"]
    lines += ["#" + line[1:] if line.startswith(" ") else "# " + line
              for line in _yaml_lines(recipe.DatahubRestSinkConfig, 4, {"server": "http://datahub-gms:8080"})]
    lines += ["", "# Optional: remember the last good run (incremental crawls, stale-entity removal, --resume).",
              "state:"]
    lines += _yaml_lines(recipe.StateConfig, 2, {})
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a checked-in reference differs")
    args = parser.parse_args(argv)
    stale = []
    for path, text in ((MARKDOWN, markdown()), (YAML, yaml_reference())):
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date with connector/config/recipe.py: {', '.join(stale)}; run `make reference`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
