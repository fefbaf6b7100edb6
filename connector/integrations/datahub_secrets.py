"""Secrets inside `datahub ingest`: what DataHub stores and prints must hold none of ours.

- DataHub stores each run's recipe with its run summary (REST and Kafka sinks), masking only
  fields whose names look secret (`password`, `token`, ...; REDACT_KEYS in
  datahub.configuration.common). A password written into a URL value (`user:password@`) would be
  stored as written, so the plugin refuses it, naming the field to put it in instead. (DataHub
  records the recipe before any source starts: the refused attempt's record still holds it.) A
  `${VAR}` is stored as the variable's name, so a URL (or its password) from the environment is
  accepted.
- Our secrets are registered with DataHub's masking registry (acryl-datahub 1.7's
  SecretRegistry), which masks DataHub's own log lines and run summary.
"""
from __future__ import annotations

from typing import Any, Optional

from datahub.configuration.common import ConfigurationError

from connector.secrets import Redactor, urls_with_passwords

_INSTEAD = {"tracking_uri": "source.config.username and source.config.password",
            "registry_uri": "source.config.username and source.config.password",
            "server": "source.config.state.token"}


def refuse_passwords_in_urls(raw_source_config: Any) -> None:
    """ConfigurationError naming the first field whose URL holds a password written as is."""
    found = urls_with_passwords(raw_source_config, ("source", "config"))
    if not found:
        return
    location, shown = found[0]
    field = ".".join(str(part) for part in location)
    instead = _INSTEAD.get(str(location[-1]), "a field of its own")
    raise ConfigurationError(
        f"{field}: refused: the URL holds a password (user:password@), which DataHub stores unmasked with each "
        f"run's recipe; give {shown} without credentials and put them in {instead} (DataHub masks those), "
        f"or take the whole URL from a ${{VAR}}")


def raw_source_config(ctx, config_dict: dict) -> Any:
    """The source config as DataHub will store it: the recipe before `${VAR}`s are filled in."""
    pipeline_config = getattr(ctx, "pipeline_config", None)
    if pipeline_config is None:
        return config_dict
    raw = pipeline_config.get_raw_dict() or {}
    return ((raw.get("source") or {}).get("config")) if isinstance(raw, dict) else config_dict


def register_secrets(redactor: Redactor) -> Optional[int]:
    """Our secrets into DataHub's masking registry; None where this acryl-datahub has none."""
    try:
        from datahub.masking.secret_registry import SecretRegistry
    except ImportError:
        return None
    registry = SecretRegistry.get_instance()
    for index, secret in enumerate(sorted(redactor.secrets)):
        registry.register_secret(f"MLFLOW_CATALOG_SECRET_{index}", secret)
    return len(redactor.secrets)
