"""The recipe's models turned into what each part of the pipeline takes, in one place: the
source's connection and crawl settings, the mapping context, the sink. Nothing below this module
(source, mapping, sinks) imports the recipe."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from connector.http import HttpSettings, RetryPolicy
from connector.secrets import Redactor, redact_url
from connector.mapping.common import MappingContext
from connector.mapping.deployments import DeploymentRule
from connector.config.recipe import AllowDenyPattern, DatahubRestSinkConfig, MlflowSourceConfig, StateConfig
from connector.sinks.base import Sink, SinkError
from connector.source.crawl_records import CrawlSettings, NameFilter
from connector.state.store_protocol import StateStore
from connector.stopping import StopToken


def is_http(uri: str) -> bool:
    return uri.lower().startswith(("http://", "https://"))


def _secret(value) -> Optional[str]:
    return value.get_secret_value() if value is not None else None


@dataclass(frozen=True)
class SourceConnection:
    """Where MLflow is and how to reach it (credentials stay in this object, never in messages)."""
    tracking_uri: str
    registry_uri: str
    http: HttpSettings
    auth: Optional[tuple[str, str]] = None
    token: Optional[str] = None

    def __repr__(self) -> str:
        return f"SourceConnection({redact_url(self.tracking_uri)!r})"


def source_connection(config: MlflowSourceConfig, stop: Optional[StopToken] = None) -> SourceConnection:
    """MLflow's own environment variables fill what the recipe leaves out; `stop`: the run's."""
    username = config.username or os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = _secret(config.password) or os.environ.get("MLFLOW_TRACKING_PASSWORD")
    token = _secret(config.token) or os.environ.get("MLFLOW_TRACKING_TOKEN")
    verify: object = True
    if config.disable_ssl_verification or os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        verify = False
    elif config.ca_certificate_path or os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH"):
        verify = config.ca_certificate_path or os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"]
    http = HttpSettings(
        timeout_sec=config.timeout_sec,
        deadline_sec=config.request_deadline_sec,
        retry=RetryPolicy(max_retries=config.max_retries, backoff_sec=config.retry_backoff_sec,
                          max_backoff_sec=config.max_backoff_sec, budget_sec=config.retry_budget_sec),
        max_requests_per_second=config.max_requests_per_second,
        max_response_bytes=config.max_response_mb * 1024 * 1024,
        verify=verify,
        stop=stop or StopToken(),
    )
    tracking_uri = config.resolved_tracking_uri()
    registry_uri = config.resolved_registry_uri()
    if is_http(tracking_uri) and not is_http(registry_uri):
        # a server's registry is served by a server: a local registry_uri (often MLflow's default
        # from the environment) cannot be read over REST, so the tracking server answers for it
        registry_uri = tracking_uri
    return SourceConnection(tracking_uri, registry_uri, http, (username, password or "") if username else None,
                            token)


def _name_filter(pattern: AllowDenyPattern) -> NameFilter:
    return NameFilter(tuple(pattern.allow), tuple(pattern.deny), pattern.ignore_case)


def crawl_settings(config: MlflowSourceConfig) -> CrawlSettings:
    return CrawlSettings(
        include_experiments=config.include_experiments, include_runs=config.include_runs,
        include_deleted=config.include_deleted, include_logged_models=config.include_logged_models,
        include_signatures=config.include_signatures,
        include_evaluation_datasets=config.include_evaluation_datasets, runs_page_size=config.runs_page_size,
        max_workers=config.max_workers, experiments=_name_filter(config.experiment_pattern),
        models=_name_filter(config.model_pattern), include_prompts=config.include_prompts,
        include_agents=config.include_agents)


def external_base_url(config: MlflowSourceConfig) -> Optional[str]:
    if config.base_external_url:
        return config.base_external_url
    uri = config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")  # none: `send` needs no source
    return redact_url(uri) if uri and is_http(uri) else None


def mapping_context(config: MlflowSourceConfig) -> MappingContext:
    return MappingContext(
        env=config.env,
        platform_instance=config.platform_instance,
        model_name_separator=config.model_name_separator,
        base_external_url=external_base_url(config),
        # sorted: the settings' hash (a change means a full crawl) must not depend on key order
        dataset_platform_mapping={k.lower(): v for k, v in sorted(config.dataset_platform_mapping.items())},
        deployment_rules=tuple(
            DeploymentRule(platform=r.platform, name_template=r.name_template, alias=r.alias,
                           tag_key=r.tag.key if r.tag else None, tag_value=r.tag.value if r.tag else None,
                           env=r.env, status=r.status, description=r.description)
            for r in config.deployments),
        model_card_tag_prefix=config.model_card_tag_prefix,
        deprecation_tag=config.deprecation_tag,
        champion_alias=config.champion_alias,
        dataset_urn=config.dataset_urn,
        agents_as=config.agents_as,
        link_prompts=config.include_prompts,
    )


def source_filters(config: MlflowSourceConfig) -> tuple:
    """The source settings that decide which entities exist: a change means a full crawl."""
    return (config.model_pattern.model_dump_json(), config.experiment_pattern.model_dump_json(),
            config.include_experiments, config.include_runs, config.include_deleted,
            config.include_logged_models, config.include_signatures) + _genai_filters(config)


def _genai_filters(config: MlflowSourceConfig) -> tuple:
    """Only when on: a recipe without them keeps its settings' hash (no full crawl after an upgrade)."""
    filters: tuple = ()
    if config.include_prompts or config.include_agents:
        filters += ("genai", config.include_prompts, config.include_agents, config.agents_as)
    if config.include_evaluation_datasets:
        filters += ("evaluation_datasets",)
    return filters


def gms_settings(c: DatahubRestSinkConfig, *, max_retries: Optional[int] = None, stop: Optional[StopToken] = None):
    from connector.sinks.gms_client import GmsSettings

    verify = False if c.disable_ssl_verification else (c.ca_certificate_path or True)
    http = HttpSettings(timeout_sec=c.timeout_sec, deadline_sec=c.request_deadline_sec, verify=verify,
                        retry=RetryPolicy(max_retries=c.max_retries if max_retries is None else max_retries,
                                          backoff_sec=c.retry_backoff_sec, max_backoff_sec=c.max_backoff_sec,
                                          budget_sec=c.retry_budget_sec), stop=stop or StopToken())
    return GmsSettings(server=c.server, token=_secret(c.token), http=http, extra_headers=dict(c.extra_headers))


def build_sink(section, run_id: str = "", pipeline_name: Optional[str] = None,
               redactor: Optional[Redactor] = None, *, stop: Optional[StopToken] = None) -> Sink:
    """`redactor`: the whole recipe's secrets (Redactor.from_recipe); by default the sink section's
    and the environment's. `stop`: the run's stop token (a REST sink's waits end on it)."""
    if section.type == "file":
        from connector.sinks.file import FileSink, expand_filename

        return FileSink(expand_filename(section.config.filename, run_id, pipeline_name or ""))
    if section.type == "datahub-rest":
        from connector.sinks.rest import RestSink

        c = section.config
        return RestSink(gms_settings(c, stop=stop), max_batch_size=c.max_batch_size, max_batch_bytes=c.max_batch_bytes,
                        max_in_flight=c.max_in_flight, dead_letter_file=c.dead_letter_file,
                        redactor=redactor or Redactor.from_recipe({"sink": section.model_dump()}))
    raise SinkError(f"sink.type: unknown sink {section.type!r}")



def open_state_store(state: StateConfig, sink, stop: Optional[StopToken] = None) -> StateStore:
    """A local file, or the catalog: its own `state.server` and token, else the datahub-rest sink's
    (the recipe validator made sure one of them is there)."""
    if state.backend == "file":
        from connector.state.store import StateFile

        return StateFile(state.path)
    from connector.sinks.gms_client import GmsClient, GmsSettings
    from connector.state.catalog_store import GmsStateStore

    if state.server:
        http = HttpSettings(timeout_sec=state.timeout_sec, deadline_sec=state.request_deadline_sec,
                            stop=stop or StopToken())
        return GmsStateStore(GmsClient(GmsSettings(server=state.server, token=_secret(state.token), http=http)))
    return GmsStateStore(GmsClient(gms_settings(sink.config, stop=stop)))
