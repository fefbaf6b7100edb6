"""The recipe's sink sections (file, datahub-rest) and its state section."""
from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field, SecretStr, field_validator

from connector.config.recipe_fields import Strict, check_url


class FileSinkConfig(Strict):
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


class FileSink(Strict):
    type: Literal["file"] = Field(description="file, or datahub-rest for DataHub's GMS.")
    config: FileSinkConfig = Field(description="See sink (type: file) and sink (type: datahub-rest).")


class DatahubRestSinkConfig(Strict):
    server: str = Field(description="GMS base URL, e.g. http://datahub-gms:8080")
    token: Optional[SecretStr] = Field(None, description="Bearer token; never printed.")
    timeout_sec: float = Field(30.0, gt=0, description="One socket read.")
    max_batch_size: int = Field(200, ge=1, le=10000, description="Proposals per ingestProposalBatch request.")
    max_batch_bytes: int = Field(14 * 1024 * 1024, ge=1024, le=15 * 1024 * 1024, description=
        "And bytes per request (GMS refuses ~15 MB).")
    max_retries: int = Field(5, ge=0, description="On 429, 5xx and connection errors.")
    retry_backoff_sec: float = Field(1.0, ge=0, description="First backoff; doubles per retry.")
    max_backoff_sec: float = Field(30.0, ge=0, description="cap of one wait between attempts (Retry-After too)")
    retry_budget_sec: float = Field(300.0, ge=0, description="all attempts of one batch, waits included")
    request_deadline_sec: float = Field(300.0, gt=0, description="one attempt, wall clock, whole answer")
    max_in_flight: int = Field(4, ge=1, le=64, description=
        "Batches on the wire while the crawl goes on (per-entity order kept).")
    ca_certificate_path: Optional[str] = Field(None, description="CA bundle for an https server.")
    disable_ssl_verification: bool = Field(False, description="Do not check the server's certificate.")
    extra_headers: dict[str, str] = Field(default_factory=dict, description=
        "Sent with every request; treated as secrets (never printed, never sent to another host).")
    dead_letter_file: str = Field("dead-letter.json", description=
        "What was not delivered, in the file sink's format; re-send with `mlflow-catalog send`.")

    @field_validator("server")
    @classmethod
    def _http(cls, value: str) -> str:
        return check_url(value, http_only=True).rstrip("/")


class DatahubRestSink(Strict):
    type: Literal["datahub-rest"] = Field(description="datahub-rest.")
    config: DatahubRestSinkConfig = Field(description="See sink (type: datahub-rest).")


SinkSection = Annotated[Union[FileSink, DatahubRestSink], Field(discriminator="type")]


class StateConfig(Strict):
    type: Literal["file"] = Field("file", description="kept for old recipes; the store is chosen by `backend`")
    backend: Literal["file", "datahub"] = Field(
        "file", description="file: a local JSON file at `path`; datahub: the catalog itself (GMS), "
                            "so runs on different machines continue each other's checkpoint")
    path: str = Field(".mlflow-catalog/state.json",
                      description="the state file (file backend); the lock file "
                                  "`<path>.<pipeline>-<hash>.lock` beside it")
    server: Optional[str] = Field(None, description="datahub backend: GMS URL; default: the datahub-rest sink's")
    token: Optional[SecretStr] = Field(None, description="datahub backend: token for `server`")
    timeout_sec: float = Field(30.0, gt=0, description="datahub backend with its own `server`: one socket read "
                                                       "(without `server`, the sink's timeouts apply)")
    request_deadline_sec: float = Field(60.0, gt=0, description="datahub backend with its own `server`: one "
                                                                "request, wall clock, whole answer")
    remove_stale: bool = Field(True, description=
        "Entities gone from MLflow since the last good crawl get status removed.")
    max_removal_ratio: float = Field(0.2, ge=0, le=1, description=
        "Refuse (and fail) a run that would remove more than this share.")
    allow_mass_removal: bool = Field(False, description="remove what the crawl no longer finds even when that "
                                     "looks like a broken listing (a deletion confirmed by a person; "
                                     "prefer `ingest --allow-mass-removal` for one run)")

    @field_validator("server")
    @classmethod
    def _http(cls, value: Optional[str]) -> Optional[str]:
        return check_url(value, http_only=True).rstrip("/") if value is not None else value
