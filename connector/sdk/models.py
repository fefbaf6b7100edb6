"""Typed arguments of the SDK calls. Each `to_aspect()` gives the catalog's JSON form of the
aspect, with only the fields that were given (so a merge never blanks what is there)."""
from __future__ import annotations

from enum import Enum
from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from connector.mapping import urns
from connector.mapping.common import drop_none, hyper_params, metric_value, sorted_props
from connector.mapping.deployments import deployment_properties


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeStamp(_Args):
    """When (epoch ms) and who."""

    time: int = Field(ge=0)
    actor: Optional[str] = Field(None, description="user name or corpuser URN")

    def to_json(self, actor_required: bool = False) -> dict:
        if self.actor:
            return {"time": self.time, "actor": urns.corpuser_urn(self.actor)}
        return {"time": self.time, "actor": "urn:li:corpuser:unknown"} if actor_required else {"time": self.time}


class RunResult(str, Enum):
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    SKIPPED = "SKIPPED"
    UP_FOR_RETRY = "UP_FOR_RETRY"


class DeploymentStatus(str, Enum):
    IN_SERVICE = "IN_SERVICE"
    OUT_OF_SERVICE = "OUT_OF_SERVICE"
    CREATING = "CREATING"
    UPDATING = "UPDATING"
    ROLLING_BACK = "ROLLING_BACK"
    DELETING = "DELETING"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"


Metrics = dict[str, Union[float, str]]


def _metrics(values: Optional[Metrics]) -> Optional[list[dict]]:
    if values is None:
        return None
    return [{"name": k, "value": v if isinstance(v, str) else metric_value(float(v))}
            for k, v in sorted(values.items())]


def _stamp(stamp: Optional[TimeStamp]) -> Optional[dict]:
    return stamp.to_json() if stamp else None


class _EntityProperties(_Args):
    """The fields model groups, models and experiments share."""

    name: Optional[str] = None
    description: Optional[str] = None
    created: Optional[TimeStamp] = None
    last_modified: Optional[TimeStamp] = None
    custom_properties: Optional[dict[str, str]] = None
    external_url: Optional[str] = None

    def _common(self, default_name: Optional[str] = None) -> dict:
        return {
            "name": self.name or default_name, "description": self.description,
            "created": _stamp(self.created), "lastModified": _stamp(self.last_modified),
            "customProperties": sorted_props(self.custom_properties) if self.custom_properties else None,
            "externalUrl": self.external_url,
        }


class ModelGroupProperties(_EntityProperties):
    def to_aspect(self) -> dict:
        return drop_none(self._common())


class ModelProperties(_EntityProperties):
    hyper_params: Optional[dict[str, str]] = None
    training_metrics: Optional[Metrics] = None
    tags: Optional[list[str]] = None

    def to_aspect(self) -> dict:
        return drop_none({
            **self._common(),
            "hyperParams": hyper_params({k: str(v) for k, v in self.hyper_params.items()})
            if self.hyper_params is not None else None,
            "trainingMetrics": _metrics(self.training_metrics),
            "tags": list(self.tags) if self.tags is not None else None,
        })


class ExperimentProperties(_EntityProperties):
    def to_aspect(self, default_name: str) -> dict:
        return drop_none(self._common(default_name))


class RunProperties(_Args):
    """`dataProcessInstanceProperties` of a training run."""

    name: Optional[str] = None
    created: Optional[TimeStamp] = None
    custom_properties: Optional[dict[str, str]] = None
    external_url: Optional[str] = None

    def to_aspect(self, default_name: str, default_time: int) -> dict:
        created = self.created or TimeStamp(time=default_time)
        return drop_none({
            "name": self.name or default_name,
            "created": created.to_json(actor_required=True),
            "customProperties": sorted_props(self.custom_properties) if self.custom_properties else None,
            "externalUrl": self.external_url,
            "type": "BATCH_AD_HOC",
        })


class TrainingRunProperties(_Args):
    """`mlTrainingRunProperties`: what the run learnt with and what it scored."""

    id: Optional[str] = None
    hyper_params: Optional[dict[str, str]] = None
    training_metrics: Optional[Metrics] = None
    output_urls: Optional[list[str]] = None
    external_url: Optional[str] = None
    custom_properties: Optional[dict[str, str]] = None

    def to_aspect(self, default_id: str) -> dict:
        return drop_none({
            "id": self.id or default_id,
            "hyperParams": hyper_params({k: str(v) for k, v in self.hyper_params.items()})
            if self.hyper_params is not None else None,
            "trainingMetrics": _metrics(self.training_metrics),
            "outputUrls": list(self.output_urls) if self.output_urls is not None else None,
            "externalUrl": self.external_url,
            "customProperties": sorted_props(self.custom_properties) if self.custom_properties else None,
        })


class DeploymentProperties(_Args):
    description: Optional[str] = None
    status: Optional[DeploymentStatus] = None
    version: Optional[str] = None
    created_at: Optional[int] = Field(None, ge=0, description="epoch ms")
    external_url: Optional[str] = None
    custom_properties: Optional[dict[str, str]] = None

    def to_aspect(self) -> dict:
        aspect = deployment_properties(
            status=self.status.value if self.status else None, description=self.description,
            version=self.version, created_at=self.created_at, external_url=self.external_url,
            custom_properties=self.custom_properties)
        if not self.custom_properties:
            aspect.pop("customProperties")  # not given: keep what the catalog has
        return aspect
