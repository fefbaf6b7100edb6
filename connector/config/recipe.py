"""Recipe: the YAML that wires a source to a sink, validated with pydantic (the source here, the
sink and state sections in recipe_sinks.py, shared pieces in recipe_fields.py).

Values may reference environment variables as ${NAME} (or ${NAME:-default});
an unknown key or a bad value is reported with its path in the recipe.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import (
    ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator,
)

from connector.mapping.deployments import DEPLOYMENT_STATUSES, TEMPLATE_FIELDS
from connector.config.recipe_env import RecipeError, expand_env
from connector.config.recipe_fields import FABRIC_TYPES, Strict as _Strict, check_url, fabric
from connector.config.recipe_sinks import (
    DatahubRestSink, DatahubRestSinkConfig, FileSink, FileSinkConfig, SinkSection, StateConfig,
)
from connector.config.recipe_yaml import RecipeFileError, read_recipe_file
from connector.secrets import Redactor, secrets_in


class AllowDenyPattern(_Strict):
    """Regexes matched from the start of the name (re.match); deny wins over allow.
    DataHub's spelling `ignoreCase` is taken too (its default, though, is to ignore case)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    allow: list[str] = Field(default_factory=lambda: [".*"], description=
        "Names matching any of these regexes (re.match) are read.")
    deny: list[str] = Field(default_factory=list, description=
        "Names matching any of these are left out, even when allowed.")
    ignore_case: bool = Field(False, alias="ignoreCase", description="Match regardless of case.")

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
    key: str = Field(description="The tag's key.")
    value: Optional[str] = Field(None, description="None: any value of the tag")


class DeploymentRuleConfig(_Strict):
    """Model versions holding `alias` and/or tag `tag` are deployed as `name_template` on `platform`."""

    alias: Optional[str] = Field(None, description="A registry alias, e.g. champion.")
    tag: Optional[TagMatch] = Field(None, description=
        "A model version tag: {key: K, value: V}; leave out value to match any.")
    platform: str = Field(description="Where it is served (a catalog data platform, e.g. sagemaker).")
    name_template: str = Field(description="fields: {model} {version} {alias} {tag_value}")
    env: Optional[str] = Field(None, description="default: the source's env")
    status: str = Field("IN_SERVICE", description=
        "IN_SERVICE, OUT_OF_SERVICE, CREATING, UPDATING, ROLLING_BACK, DELETING, FAILED or UNKNOWN.")
    description: Optional[str] = Field(None, description="Shown on the deployment.")

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
    env: str = Field("PROD", description="Fabric type in every URN: PROD, DEV, QA, TEST, STG, UAT, ...")
    platform_instance: Optional[str] = Field(None, description=
        "Which MLflow server this is, when a catalog holds several: part of every URN that names an MLflow object, "
        "and a dataPlatformInstance aspect.")
    model_name_separator: str = Field("_", description=
        "Model version URN name = <registered model><separator><version>.")
    base_external_url: Optional[str] = Field(None, description=
        "MLflow UI base for links. Default: tracking_uri when it is http(s).")
    username: Optional[str] = Field(None, description="Basic-auth user (or MLFLOW_TRACKING_USERNAME).")
    password: Optional[SecretStr] = Field(None, description=
        "Basic-auth password (or MLFLOW_TRACKING_PASSWORD); never logged.")
    token: Optional[SecretStr] = Field(None, description=
        "Sent as 'Authorization: Bearer ...' (or MLFLOW_TRACKING_TOKEN); wins over username/password; never logged.")
    model_pattern: AllowDenyPattern = Field(default_factory=AllowDenyPattern, description=
        "Registered model names to read; regexes matched from the start, deny wins. Models left out are counted in "
        "the report.")
    experiment_pattern: AllowDenyPattern = Field(default_factory=AllowDenyPattern, description=
        "Experiment names to read, same rules.")
    include_experiments: bool = Field(True, description="Experiments as containers (and their runs).")
    include_runs: bool = Field(True, description=
        "Runs as dataProcessInstances; versions keep their run's params and metrics either way.")
    include_deleted: bool = Field(False, description=
        "Deleted experiments and runs, emitted with status.removed = true.")
    include_logged_models: bool = Field(False, description="MLflow 3: also LoggedModels no registry version points at.")
    include_signatures: bool = Field(False, description=
        "Read each model's MLmodel; signature columns become mlFeature entities.")
    include_prompts: bool = Field(False, description=
        "MLflow 3 Prompt Registry: prompts as mlModelGroups (sub-type Prompt), their versions as mlModels with the "
        "template as documentation (docs/genai.md). Two paged listings, whatever the number of prompts.")
    include_agents: bool = Field(False, description=
        "MLflow 3: LoggedModels of model_type 'agent' as agents (see agents_as), with the prompts they link.")
    agents_as: Literal["ai_agent", "ml_model"] = Field("ai_agent", description=
        "ai_agent: DataHub's aiAgent entity (DataHub 1.7 or newer); ml_model: an mlModel, for an older catalog.")
    include_evaluation_datasets: bool = Field(False, description=
        "MLflow 3: GenAI evaluation datasets (one paged listing, no record read) as datasets with their schema; "
        "the models an evaluation measured point at them and at their evaluation runs.")
    model_card_tag_prefix: str = Field("card.", description=
        "Tags card.intended_use.primary_uses, card.ethics.*, ... become model card aspects.")
    deprecation_tag: str = Field("deprecated", description=
        "A version or model tagged so (or an Archived version) gets a deprecation aspect.")
    champion_alias: str = Field("champion", description="The alias named as a deprecated version's replacement.")
    dataset_platform_mapping: dict[str, str] = Field(default_factory=dict, description=
        "MLflow dataset source type -> catalog platform for the upstream of logged datasets, e.g. {delta_table: "
        "databricks}. Built in: gs->gcs, abfss/wasbs->abs, delta_table->delta-lake, hugging_face->huggingface, and "
        "any DataHub platform name as itself.")
    dataset_urn: Literal["source", "name"] = Field(
        "source", description="source: a dataset is its name and source (NAME@ID); name: its name alone, "
                              "as DataHub's own MLflow source keys it (datasets of one name merge)")
    deployments: list[DeploymentRuleConfig] = Field(
        default_factory=list, description="registry aliases / version tags -> mlModelDeployment entities")
    timeout_sec: float = Field(30.0, gt=0, description="One socket read.")
    max_retries: int = Field(3, ge=0, description=
        "On 429, 5xx and connection errors, with exponential backoff and jitter.")
    retry_backoff_sec: float = Field(0.5, ge=0, description="First backoff; doubles per retry.")
    retry_budget_sec: float = Field(30.0, ge=0, description="all attempts of one request, waits included")
    max_backoff_sec: float = Field(30.0, ge=0, description="cap of one wait between attempts (Retry-After too)")
    request_deadline_sec: float = Field(300.0, gt=0, description="one attempt, wall clock, whole answer")
    max_response_mb: int = Field(512, ge=1, description="an answer larger than this is an error")
    max_requests_per_second: Optional[float] = Field(None, gt=0, description=
        "Protects a shared tracking server (artifact reads included).")
    incremental: bool = Field(False, description="Only what changed since the checkpoint (needs a state section).")
    incremental_lookback_sec: int = Field(3600, ge=0, description=
        "Incremental runs re-read runs started this long before the checkpoint.")
    runs_page_size: int = Field(1000, ge=1, le=50000, description=
        "Runs per search request (server maximum 50000); a resumable full crawl checkpoints per page.")
    max_workers: int = Field(4, ge=1, le=32, description=
        "Threads for independent page streams (registry beside experiments, next page prefetched).")
    disable_ssl_verification: bool = Field(False, description="Or MLFLOW_TRACKING_INSECURE_TLS=true.")
    ca_certificate_path: Optional[str] = Field(None, description="Or MLFLOW_TRACKING_SERVER_CERT_PATH.")

    @field_validator("env")
    @classmethod
    def _fabric(cls, value: str) -> str:
        return fabric(value)

    @model_validator(mode="before")
    @classmethod
    def _datahub_mlflow_keys(cls, data: Any) -> Any:
        """Keys of DataHub's own MLflow source (`type: mlflow`), with their meaning (docs/datahub-ingest.md)."""
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
    type: Literal["mlflow"] = Field(description="mlflow (mlflow-catalog inside `datahub ingest`).")
    config: MlflowSourceConfig = Field(default_factory=MlflowSourceConfig, description="See source (type: mlflow).")


class Recipe(_Strict):
    pipeline_name: Optional[str] = Field(None, description=
        "Names the pipeline: its checkpoint, lock and the run id stamped on every proposal (systemMetadata.runId = "
        "NAME-<utc time>-<hex>). Required with a state section.")
    source: MlflowSource = Field(description="Where MLflow is and what to read from it.")
    sink: SinkSection = Field(description="Where the proposals go: a file DataHub's tools read, or DataHub's GMS.")
    state: Optional[StateConfig] = Field(None, description=
        "Remember the last good run: incremental crawls, removal of what disappeared, --resume.")
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


__all__ = ["FABRIC_TYPES", "AllowDenyPattern", "DatahubRestSink", "DatahubRestSinkConfig", "DeploymentRuleConfig",
           "FileSink", "FileSinkConfig", "MlflowSource", "MlflowSourceConfig", "Recipe", "RecipeError", "SinkSection",
           "StateConfig", "TagMatch", "check_url", "error_location", "expand_env", "fabric", "load_recipe",
           "parse_recipe"]
