"""Recipe: the YAML that wires a source to a sink, validated with pydantic.

Values may reference environment variables as ${NAME} (or ${NAME:-default});
an unknown key or a bad value is reported with its path in the recipe.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator,
)

from connector.mapping.deployments import DEPLOYMENT_STATUSES, TEMPLATE_FIELDS
from connector.recipe_env import RecipeError, expand_env
from connector.recipe_yaml import RecipeFileError, read_recipe_file
from connector.secrets import Redactor, redact_url, secrets_in

FABRIC_TYPES = (
    "DEV", "TEST", "QA", "UAT", "EI", "PRE", "STG", "NON_PROD", "PROD", "CORP",
    "RVW", "PRD", "TST", "SIT", "SBX", "SANDBOX",
)


def fabric(value: str) -> str:
    """An env (fabric type) as DataHub spells it, or a ValueError naming the known ones."""
    if value.upper() not in FABRIC_TYPES:
        raise ValueError(f"unknown env {value!r}; one of {', '.join(FABRIC_TYPES)}")
    return value.upper()


class _Strict(BaseModel):
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


class AllowDenyPattern(_Strict):
    """Regexes matched from the start of the name (re.match); deny wins over allow.
    DataHub's spelling `ignoreCase` is taken too (its default, though, is to ignore case)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    allow: list[str] = Field(default_factory=lambda: [".*"])
    deny: list[str] = Field(default_factory=list)
    ignore_case: bool = Field(False, alias="ignoreCase")

    @field_validator("allow", "deny")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex {pattern!r}: {exc}") from exc
        return patterns


class TagMatch(_Strict):
    key: str
    value: Optional[str] = Field(None, description="None: any value of the tag")


class DeploymentRuleConfig(_Strict):
    """Model versions holding `alias` and/or tag `tag` are deployed as `name_template` on `platform`."""

    alias: Optional[str] = None
    tag: Optional[TagMatch] = None
    platform: str
    name_template: str = Field(description="fields: {model} {version} {alias} {tag_value}")
    env: Optional[str] = Field(None, description="default: the source's env")
    status: str = "IN_SERVICE"
    description: Optional[str] = None

    @field_validator("name_template")
    @classmethod
    def _template(cls, value: str) -> str:
        try:
            name = value.format(**{f: "x" for f in TEMPLATE_FIELDS})
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"bad template {value!r} ({type(exc).__name__}: {exc}); "
                             f"fields: {', '.join('{' + f + '}' for f in TEMPLATE_FIELDS)}") from None
        if not name.strip():
            raise ValueError("must not give an empty name")
        return value

    @field_validator("status")
    @classmethod
    def _status(cls, value: str) -> str:
        if value.upper() not in DEPLOYMENT_STATUSES:
            raise ValueError(f"unknown status {value!r}; one of {', '.join(DEPLOYMENT_STATUSES)}")
        return value.upper()

    @field_validator("env")
    @classmethod
    def _env(cls, value: Optional[str]) -> Optional[str]:
        return fabric(value) if value is not None else None

    @model_validator(mode="after")
    def _selects_something(self) -> "DeploymentRuleConfig":
        if self.alias is None and self.tag is None:
            raise ValueError("a deployment rule needs an alias, a tag, or both")
        return self


class MlflowSourceConfig(_Strict):
    tracking_uri: Optional[str] = Field(
        None, description="MLflow tracking URI (http(s)://, sqlite:///, file:). Default: $MLFLOW_TRACKING_URI.")
    registry_uri: Optional[str] = Field(
        None, description="Model registry URI. Default: $MLFLOW_REGISTRY_URI, else tracking_uri.")
    env: str = "PROD"
    platform_instance: Optional[str] = None
    model_name_separator: str = "_"
    base_external_url: Optional[str] = None
    username: Optional[str] = None
    password: Optional[SecretStr] = None
    token: Optional[SecretStr] = None
    model_pattern: AllowDenyPattern = Field(default_factory=AllowDenyPattern)
    experiment_pattern: AllowDenyPattern = Field(default_factory=AllowDenyPattern)
    include_experiments: bool = True
    include_runs: bool = True
    include_deleted: bool = False
    include_logged_models: bool = False
    include_signatures: bool = False
    model_card_tag_prefix: str = "card."
    deprecation_tag: str = "deprecated"
    champion_alias: str = "champion"
    dataset_platform_mapping: dict[str, str] = Field(default_factory=dict)
    dataset_urn: Literal["source", "name"] = Field(
        "source", description="source: a dataset is its name and source (NAME@ID); name: its name alone, "
                              "as DataHub's own MLflow source keys it (datasets of one name merge)")
    deployments: list[DeploymentRuleConfig] = Field(
        default_factory=list, description="registry aliases / version tags -> mlModelDeployment entities")
    timeout_sec: float = Field(30.0, gt=0)
    max_retries: int = Field(3, ge=0)
    retry_backoff_sec: float = Field(0.5, ge=0)
    retry_budget_sec: float = Field(30.0, ge=0, description="all attempts of one request, waits included")
    max_backoff_sec: float = Field(30.0, ge=0, description="cap of one wait between attempts (Retry-After too)")
    request_deadline_sec: float = Field(300.0, gt=0, description="one attempt, wall clock, whole answer")
    max_response_mb: int = Field(512, ge=1, description="an answer larger than this is an error")
    max_requests_per_second: Optional[float] = Field(None, gt=0)
    incremental: bool = False
    incremental_lookback_sec: int = Field(3600, ge=0)
    runs_page_size: int = Field(1000, ge=1, le=50000)
    max_workers: int = Field(4, ge=1, le=32)
    disable_ssl_verification: bool = False
    ca_certificate_path: Optional[str] = None

    @field_validator("env")
    @classmethod
    def _fabric(cls, value: str) -> str:
        return fabric(value)

    @model_validator(mode="before")
    @classmethod
    def _datahub_mlflow_keys(cls, data: Any) -> Any:
        """Keys of DataHub's own MLflow source (`type: mlflow`), with their meaning (README: migrating)."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "source_mapping_to_platform" in data:
            if "dataset_platform_mapping" in data:
                raise ValueError("source_mapping_to_platform is DataHub's name for dataset_platform_mapping; "
                                 "give only one of them")
            data["dataset_platform_mapping"] = data.pop("source_mapping_to_platform") or {}
        if data.pop("materialize_dataset_inputs", None) not in (None, False, "false", "False"):
            raise ValueError("materialize_dataset_inputs: true is not supported: each run input is linked to its "
                             "upstream dataset (upstreamLineage; platforms from dataset_platform_mapping) without "
                             "creating that dataset, which its platform's own source ingests; remove the key")
        return data

    @field_validator("model_name_separator")
    @classmethod
    def _separator(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @field_validator("tracking_uri", "registry_uri")
    @classmethod
    def _uri(cls, value: Optional[str]) -> Optional[str]:
        return check_url(value) if value else value

    @field_validator("base_external_url")
    @classmethod
    def _external(cls, value: Optional[str]) -> Optional[str]:
        return check_url(value, http_only=True) if value else value

    def resolved_tracking_uri(self) -> str:
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise RecipeError("source.config.tracking_uri: required (or set MLFLOW_TRACKING_URI)")
        return uri

    def resolved_registry_uri(self) -> str:
        return self.registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or self.resolved_tracking_uri()


class MlflowSource(_Strict):
    type: Literal["mlflow"]
    config: MlflowSourceConfig = Field(default_factory=MlflowSourceConfig)


class FileSinkConfig(_Strict):
    filename: str = Field(description="may hold {run_id}, {timestamp}, {pipeline_name}: a file per run")

    @field_validator("filename")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        try:
            value.format(run_id="r", timestamp="t", pipeline_name="p")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"bad placeholder in {value!r} ({type(exc).__name__}: {exc}); "
                             "known: {run_id} {timestamp} {pipeline_name}") from None
        return value


class FileSink(_Strict):
    type: Literal["file"]
    config: FileSinkConfig


class DatahubRestSinkConfig(_Strict):
    server: str = Field(description="GMS base URL, e.g. http://datahub-gms:8080")
    token: Optional[SecretStr] = None
    timeout_sec: float = Field(30.0, gt=0)
    max_batch_size: int = Field(200, ge=1, le=10000)
    max_batch_bytes: int = Field(14 * 1024 * 1024, ge=1024, le=15 * 1024 * 1024)
    max_retries: int = Field(5, ge=0)
    retry_backoff_sec: float = Field(1.0, ge=0)
    max_backoff_sec: float = Field(30.0, ge=0, description="cap of one wait between attempts (Retry-After too)")
    retry_budget_sec: float = Field(300.0, ge=0, description="all attempts of one batch, waits included")
    request_deadline_sec: float = Field(300.0, gt=0, description="one attempt, wall clock, whole answer")
    max_in_flight: int = Field(4, ge=1, le=64)
    ca_certificate_path: Optional[str] = None
    disable_ssl_verification: bool = False
    extra_headers: dict[str, str] = Field(default_factory=dict)
    dead_letter_file: str = "dead-letter.json"

    @field_validator("server")
    @classmethod
    def _http(cls, value: str) -> str:
        return check_url(value, http_only=True).rstrip("/")


class DatahubRestSink(_Strict):
    type: Literal["datahub-rest"]
    config: DatahubRestSinkConfig


SinkSection = Annotated[Union[FileSink, DatahubRestSink], Field(discriminator="type")]


class StateConfig(_Strict):
    type: Literal["file"] = Field("file", description="kept for old recipes; the store is chosen by `backend`")
    backend: Literal["file", "datahub"] = Field(
        "file", description="file: a local JSON file at `path`; datahub: the catalog itself (GMS), "
                            "so runs on different machines continue each other's checkpoint")
    path: str = Field(".mlflow-catalog/state.json",
                      description="the state file (file backend); the lock file "
                                  "`<path>.<pipeline>-<hash>.lock` beside it")
    server: Optional[str] = Field(None, description="datahub backend: GMS URL; default: the datahub-rest sink's")
    token: Optional[SecretStr] = Field(None, description="datahub backend: token for `server`")
    remove_stale: bool = True
    max_removal_ratio: float = Field(0.2, ge=0, le=1)
    allow_mass_removal: bool = Field(False, description="remove what the crawl no longer finds even when that "
                                     "looks like a broken listing (a deletion confirmed by a person; "
                                     "prefer `ingest --allow-mass-removal` for one run)")

    @field_validator("server")
    @classmethod
    def _http(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not value.lower().startswith(("http://", "https://")):
            raise ValueError(f"expected an http(s):// URL, got {value!r}")
        return value.rstrip("/") if value else value


class Recipe(_Strict):
    pipeline_name: Optional[str] = None
    source: MlflowSource
    sink: SinkSection
    state: Optional[StateConfig] = None
    # recipe path (e.g. "pipeline_name") -> the ${VAR}s its value came from
    _env_fields: dict = PrivateAttr(default_factory=dict)

    @property
    def env_fields(self) -> dict[str, list[str]]:
        return self._env_fields

    @model_validator(mode="after")
    def _state_is_usable(self) -> "Recipe":
        if self.state is not None and not self.pipeline_name:
            raise ValueError("pipeline_name: required when state is configured (it keys the checkpoint)")
        if self.source.config.incremental and self.state is None:
            raise ValueError("source.config.incremental: needs a state section to keep the checkpoint in")
        state = self.state
        if state is not None and state.backend == "datahub" and not state.server and self.sink.type != "datahub-rest":
            raise ValueError("state.backend: 'datahub' keeps the checkpoint in GMS; it needs the datahub-rest "
                             "sink or state.server")
        if state is not None and state.token is not None and not state.server:
            raise ValueError("state.token: only used with state.server")
        return self


def error_location(loc: tuple) -> str:
    """A pydantic error location as the recipe path a user reads, e.g. source.config.env."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in ("file", "datahub-rest", "mlflow") and parts and parts[-1] in ("sink", "source"):
            continue  # pydantic's discriminator tag, not a key of the recipe
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "recipe"


def _hide_values(message: str, location: str, used: dict, redactor: Redactor) -> str:
    """A validation message that names the ${VAR} a value came from instead of showing it."""
    own = used.get(location, {})
    for fed in (own, *(v for k, v in used.items() if k != location)):
        for name, value in sorted(fed.items(), key=lambda item: -len(item[1])):
            if value and (fed is own or len(value) >= 4):
                message = message.replace(repr(value), f"${{{name}}}").replace(value, f"${{{name}}}")
    message = redactor.redact(message)
    if own:
        message += " (value from " + ", ".join(f"${{{n}}}" for n in own) + ")"
    return message


def parse_recipe(data: Any) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError("recipe: expected a mapping with 'source' and 'sink'")
    used: dict = {}
    data = expand_env(data, used=used)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        redactor = Redactor(secrets_in(data))
        lines = []
        for error in exc.errors():
            location = error_location(error["loc"]) if error["loc"] else ""
            message = _hide_values(error["msg"].removeprefix("Value error, "), location, used, redactor)
            lines.append(f"{location}: {message}" if location else message)
        raise RecipeError("invalid recipe:\n  " + "\n  ".join(lines)) from None
    recipe._env_fields = {path: sorted(names) for path, names in used.items()}
    return recipe


def load_recipe(path: str | Path) -> Recipe:
    try:
        data = read_recipe_file(path)
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror}") from None
    except RecipeFileError as exc:
        raise RecipeError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise RecipeError(f"recipe {path} is not valid YAML: {_yaml_problem(exc)}") from None
    return parse_recipe(data)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What and where, without the snippet of the line PyYAML quotes (it may hold a secret)."""
    problem = getattr(exc, "problem", None) or type(exc).__name__
    mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"{context + ': ' if context else ''}{problem}{where}"
