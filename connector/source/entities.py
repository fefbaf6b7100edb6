"""Plain records of what MLflow holds, parsed from MLflow's REST JSON shape.

Both backends (HTTP and the local-store client) produce that JSON shape, so
this module is the only place that knows how MLflow spells its fields.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional


def _tags(items: Optional[list]) -> dict[str, str]:
    return {t["key"]: t.get("value", "") for t in items or []}


def _int(value: Any) -> Optional[int]:
    return int(value) if value not in (None, "") else None


def _order(metric: dict) -> tuple[int, int]:
    """Where a logged metric value stands in MLflow's own order: step, then timestamp."""
    return (_int(metric.get("step")) or 0, _int(metric.get("timestamp")) or 0)


def _float(value: Any) -> float:
    # MLflow's JSON spells non-finite metrics "NaN", "Infinity", "-Infinity". A value that is no
    # number at all (a wrong server) is kept as it is: mapping refuses it naming the run and metric.
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


@dataclass(frozen=True, slots=True)
class Experiment:
    experiment_id: str
    name: str
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: Optional[int] = None
    last_update_time: Optional[int] = None
    artifact_location: str = ""
    lifecycle_stage: str = "active"

    @classmethod
    def from_json(cls, d: dict) -> "Experiment":
        return cls(
            experiment_id=str(d["experiment_id"]),
            name=d.get("name", ""),
            artifact_location=d.get("artifact_location", ""),
            lifecycle_stage=d.get("lifecycle_stage", "active"),
            creation_time=_int(d.get("creation_time")),
            last_update_time=_int(d.get("last_update_time")),
            tags=_tags(d.get("tags")),
        )


@dataclass(frozen=True, slots=True)
class LoggedDataset:
    name: str
    digest: str = ""
    source_type: str = ""
    source: str = ""
    schema: str = ""
    profile: str = ""

    @property
    def source_fields(self) -> dict:
        """The dataset source's JSON object (uri, path, delta_table_name, ...), or {}."""
        try:
            parsed = json.loads(self.source) if self.source else None
        except ValueError:
            return {}
        return parsed if isinstance(parsed, dict) else {}

    @property
    def source_uri(self) -> Optional[str]:
        fields = self.source_fields
        uri = fields.get("uri") or fields.get("url") or fields.get("path")
        return str(uri) if uri else None

    @property
    def source_table(self) -> Optional[str]:
        fields = self.source_fields
        table = fields.get("delta_table_name") or fields.get("table_name") or fields.get("table")
        return str(table) if table else None


@dataclass(frozen=True, slots=True)
class DatasetInput:
    dataset: LoggedDataset
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def context(self) -> Optional[str]:
        return self.tags.get("mlflow.data.context")


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    experiment_id: str
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    dataset_inputs: list[DatasetInput] = field(default_factory=list)
    run_name: str = ""
    start_time: Optional[int] = None
    user_id: str = ""
    end_time: Optional[int] = None
    status: str = ""
    artifact_uri: str = ""
    lifecycle_stage: str = "active"
    # each metric's latest value as MLflow orders them: (step, timestamp)
    metric_order: dict[str, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict) -> "Run":
        info = d.get("info", {})
        data = d.get("data", {})
        inputs = (d.get("inputs") or {}).get("dataset_inputs") or []
        return cls(
            run_id=info.get("run_id") or info["run_uuid"],
            experiment_id=str(info.get("experiment_id", "")),
            run_name=info.get("run_name", ""),
            user_id=info.get("user_id", ""),
            status=info.get("status", ""),
            start_time=_int(info.get("start_time")),
            end_time=_int(info.get("end_time")),
            artifact_uri=info.get("artifact_uri", ""),
            lifecycle_stage=info.get("lifecycle_stage", "active"),
            params={p["key"]: p.get("value", "") for p in data.get("params") or []},
            metrics={m["key"]: _float(m.get("value", "NaN")) for m in data.get("metrics") or []},
            metric_order={m["key"]: _order(m) for m in data.get("metrics") or []},
            tags=_tags(data.get("tags")),
            dataset_inputs=[
                DatasetInput(
                    dataset=LoggedDataset(
                        **{k: str(v) for k, v in i.get("dataset", {}).items()
                           if k in LoggedDataset.__dataclass_fields__}
                    ),
                    tags=_tags(i.get("tags")),
                )
                for i in inputs
                if i.get("dataset", {}).get("name") is not None
            ],
        )


@dataclass(frozen=True, slots=True)
class ModelVersion:
    name: str
    version: str
    creation_timestamp: Optional[int] = None
    last_updated_timestamp: Optional[int] = None
    current_stage: str = "None"
    description: str = ""
    source: str = ""
    run_id: str = ""
    status: str = ""
    user_id: str = ""
    run_link: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    aliases: list[str] = field(default_factory=list)

    @property
    def model_id(self) -> Optional[str]:
        """The MLflow 3 LoggedModel this version registers (its source is models:/<model_id>)."""
        if self.source.startswith("models:/m-"):
            return self.source[len("models:/"):].split("/", 1)[0]
        return None

    @property
    def version_number(self) -> int:
        try:
            return int(self.version)
        except ValueError:
            return 0

    @classmethod
    def from_json(cls, d: dict) -> "ModelVersion":
        return cls(
            name=d["name"],
            version=str(d["version"]),
            creation_timestamp=_int(d.get("creation_timestamp")),
            last_updated_timestamp=_int(d.get("last_updated_timestamp")),
            current_stage=d.get("current_stage") or "None",
            description=d.get("description", "") or "",
            source=d.get("source", ""),
            run_id=d.get("run_id", "") or "",
            status=d.get("status", ""),
            user_id=d.get("user_id", "") or "",
            run_link=d.get("run_link", "") or "",
            tags=_tags(d.get("tags")),
            aliases=sorted(d.get("aliases") or []),
        )


@dataclass(frozen=True, slots=True)
class RegisteredModel:
    name: str
    creation_timestamp: Optional[int] = None
    last_updated_timestamp: Optional[int] = None
    description: str = ""
    user_id: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    # alias -> version, as MLflow returns them on the registered model
    aliases: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, d: dict) -> "RegisteredModel":
        return cls(
            name=d["name"],
            creation_timestamp=_int(d.get("creation_timestamp")),
            last_updated_timestamp=_int(d.get("last_updated_timestamp")),
            description=d.get("description", "") or "",
            user_id=d.get("user_id", "") or "",
            tags=_tags(d.get("tags")),
            aliases={a["alias"]: str(a["version"]) for a in d.get("aliases") or []},
        )


@dataclass(frozen=True, slots=True)
class LoggedMetric:
    key: str
    value: float
    dataset_name: str = ""
    dataset_digest: str = ""
    run_id: str = ""
    order: tuple[int, int] = (0, 0)  # (step, timestamp)


@dataclass(frozen=True, slots=True)
class LoggedModel:
    """An MLflow 3 LoggedModel: params and metrics logged against a model (and a dataset)."""
    model_id: str
    experiment_id: str
    creation_timestamp: Optional[int] = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[LoggedMetric] = field(default_factory=list)
    name: str = ""
    artifact_uri: str = ""
    last_updated_timestamp: Optional[int] = None
    status: str = ""
    model_type: str = ""
    source_run_id: str = ""
    # signature input columns (MLmodel), read only when signatures are asked for
    signature_inputs: Optional[list] = None

    @property
    def registered(self) -> bool:
        return bool(self.tags.get("mlflow.modelVersions"))

    @classmethod
    def from_json(cls, d: dict) -> "LoggedModel":
        info, data = d.get("info", {}), d.get("data", {})
        return cls(
            model_id=info["model_id"],
            experiment_id=str(info.get("experiment_id", "")),
            name=info.get("name", ""),
            artifact_uri=info.get("artifact_uri", ""),
            status=info.get("status", ""),
            model_type=info.get("model_type", "") or "",
            source_run_id=info.get("source_run_id", "") or "",
            creation_timestamp=_int(info.get("creation_timestamp_ms")),
            last_updated_timestamp=_int(info.get("last_updated_timestamp_ms")),
            tags=_tags(info.get("tags")),
            params={p["key"]: p.get("value", "") for p in data.get("params") or []},
            metrics=[LoggedMetric(key=m["key"], value=_float(m.get("value", "NaN")),
                                  dataset_name=m.get("dataset_name", "") or "",
                                  dataset_digest=m.get("dataset_digest", "") or "",
                                  run_id=m.get("run_id", "") or "", order=_order(m))
                     for m in data.get("metrics") or []],
        )
