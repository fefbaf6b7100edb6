"""Plain records of what MLflow holds, parsed from MLflow's REST JSON shape.

Both backends (HTTP and the local-store client) produce that JSON shape, so
this module is the only place that knows how MLflow spells its fields.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional

from connector.secrets import strip_url_credentials
from connector.source.fields import (  # noqa: F401  (MalformedRecord, json_kind: re-exported)
    MalformedRecord, _Bad, _int, _keyed_item, _kind, _list, _name_of, _object, _pairs, _parsing, _tags, _text,
    json_kind,
)


PROMPT_TAG = "mlflow.prompt.is_prompt"       # "true" on a prompt and on each of its versions
LINKED_PROMPTS_TAG = "mlflow.linkedPrompts"  # JSON [{"name", "version"}] on LoggedModels and runs


def name_version_pairs(text: str) -> tuple[tuple[str, str], ...]:
    """The (name, version) pairs of MLflow's JSON list `[{"name", "version"}]` (linked prompts,
    registry versions); an item whose name or version is no plain value (a list, an object, a
    boolean) is left out: it names no entity."""
    try:
        items = json.loads(text or "[]")
    except ValueError:
        return ()
    if not isinstance(items, list):
        return ()
    pairs = [(i["name"], str(i["version"])) for i in items if isinstance(i, dict)
             and isinstance(i.get("name"), str) and i["name"]
             and isinstance(i.get("version"), (str, int)) and not isinstance(i["version"], bool)
             and str(i["version"])]
    return tuple(sorted(set(pairs)))


def linked_prompts(tags: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The (prompt name, version) pairs a LoggedModel's or run's tags link; () for none or a
    value that is not MLflow's list."""
    return name_version_pairs(tags.get(LINKED_PROMPTS_TAG) or "")


def _order(metric: dict) -> tuple[int, int]:
    """Where a logged metric value stands in MLflow's own order: step, then timestamp."""
    return (_int(metric.get("step"), "step") or 0, _int(metric.get("timestamp"), "timestamp") or 0)


def _float(value: Any, name: str) -> float:
    # MLflow's JSON spells non-finite metrics "NaN", "Infinity", "-Infinity". A value that is no
    # number at all (a wrong server) is kept as it is: mapping refuses it naming the run and metric.
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
    except OverflowError:  # a whole number past any double (JSON's 1e400 is already infinity)
        raise _Bad(f"{name} is a number too large for a metric ({str(value)[:20]}...)") from None


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
        what = f"experiment {_name_of(d.get('experiment_id') if isinstance(d, dict) else None)}"
        return _parsing(what, lambda d: cls(
            experiment_id=_text(d["experiment_id"], "experiment_id"),
            name=_text(d.get("name", ""), "name"),
            artifact_location=_text(d.get("artifact_location", ""), "artifact_location"),
            lifecycle_stage=_text(d.get("lifecycle_stage"), "lifecycle_stage") or "active",
            creation_time=_int(d.get("creation_time"), "creation_time"),
            last_update_time=_int(d.get("last_update_time"), "last_update_time"),
            tags=_tags(d.get("tags")),
        ), d)


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
        info = d.get("info") if isinstance(d, dict) else None
        run_id = (info.get("run_id") or info.get("run_uuid")) if isinstance(info, dict) else None
        return _parsing(f"run {_name_of(run_id)}", cls._parse, d)

    @classmethod
    def _parse(cls, d: dict) -> "Run":
        info, data = _object(d.get("info"), "info"), _object(d.get("data"), "data")
        inputs = _list(_object(d.get("inputs"), "inputs").get("dataset_inputs"), "inputs.dataset_inputs")
        return cls(
            run_id=_text(info.get("run_id") or info["run_uuid"], "info.run_id"),
            experiment_id=_text(info.get("experiment_id", ""), "info.experiment_id"),
            run_name=_text(info.get("run_name", ""), "info.run_name"),
            user_id=_text(info.get("user_id", ""), "info.user_id"),
            status=_text(info.get("status", ""), "info.status"),
            start_time=_int(info.get("start_time"), "info.start_time"),
            end_time=_int(info.get("end_time"), "info.end_time"),
            artifact_uri=_text(info.get("artifact_uri", ""), "info.artifact_uri"),
            lifecycle_stage=_text(info.get("lifecycle_stage"), "info.lifecycle_stage") or "active",
            params=_pairs(data.get("params"), "data.params"),
            **_metrics_with_order(data.get("metrics"), "data.metrics"),
            tags=_tags(data.get("tags"), "data.tags"),
            dataset_inputs=[x for n, i in enumerate(inputs) if (x := _dataset_input(i, f"inputs.dataset_inputs[{n}]"))],
        )


def _metrics_with_order(items: Any, name: str) -> dict:
    """A run's `metrics` and `metric_order` (see Run)."""
    quick = _plain_metrics(items) if type(items) is list else None
    if quick is not None:
        return quick
    values = _metrics(items, name)
    # (keyed as `metrics` is: a key sent as a number, 3, is "3" in both)
    return {"metrics": values, "metric_order": {_text(m["key"], name): _order(m) for m in items or []}}


def _plain_metrics(items: list) -> Optional[dict]:
    """The common case in one pass: ASCII keys, numeric values, whole-number steps and times.
    None for anything else (a "NaN", a time as a string, a missing key): the named checks take it."""
    values: dict[str, float] = {}
    order: dict[str, tuple[int, int]] = {}
    try:
        for m in items:
            key, value, step, timestamp = m["key"], m["value"], m.get("step", 0), m.get("timestamp", 0)
            if (type(key) is not str or not key.isascii() or type(value) not in (float, int)
                    or type(step) is not int or type(timestamp) is not int):
                return None
            values[key] = float(value)
            order[key] = (step, timestamp)
    except (TypeError, KeyError, AttributeError, OverflowError):
        return None
    return {"metrics": values, "metric_order": order}


def _metrics(items: Any, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for index, m in enumerate(_list(items, name)):
        where = f"{name}[{index}]"
        key = _text(_keyed_item(m, where)["key"], f"{where}.key")
        out[key] = _float(m.get("value", "NaN"), f"{where}.value")
    return out


def _dataset_input(item: Any, name: str) -> Optional[DatasetInput]:
    """A run's input dataset; None for one without a name (left out)."""
    dataset = _object(_object(item, name).get("dataset"), f"{name}.dataset")
    if dataset.get("name") is None:
        return None
    # a dataset's source is only ever shown: no password of a URL in it goes further
    fields = {k: strip_url_credentials(_text(str(v), f"{name}.dataset.{k}")) for k, v in dataset.items()
              if k in LoggedDataset.__dataclass_fields__}
    return DatasetInput(dataset=LoggedDataset(**fields), tags=_tags(item.get("tags"), f"{name}.tags"))


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
        what = (f"model version {_name_of(d.get('name'))} v{_name_of(d.get('version'))}" if isinstance(d, dict)
                else "model version ?")
        return _parsing(what, lambda d: cls(
            name=_text(d["name"], "name"),
            version=_text(d["version"], "version"),
            creation_timestamp=_int(d.get("creation_timestamp"), "creation_timestamp"),
            last_updated_timestamp=_int(d.get("last_updated_timestamp"), "last_updated_timestamp"),
            current_stage=_text(d.get("current_stage"), "current_stage") or "None",
            description=_text(d.get("description"), "description"),
            source=_text(d.get("source", ""), "source"),
            run_id=_text(d.get("run_id"), "run_id"),
            status=_text(d.get("status", ""), "status"),
            user_id=_text(d.get("user_id"), "user_id"),
            run_link=_text(d.get("run_link"), "run_link"),
            tags=_tags(d.get("tags")),
            aliases=sorted(_text(a, "aliases") for a in _list(d.get("aliases"), "aliases")),
        ), d)


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

    @property
    def is_prompt(self) -> bool:
        """A Prompt Registry prompt (MLflow 3 keeps prompts as tagged registered models)."""
        return self.tags.get(PROMPT_TAG, "").lower() == "true"

    @classmethod
    def from_json(cls, d: dict) -> "RegisteredModel":
        what = f"registered model {_name_of(d.get('name') if isinstance(d, dict) else None)}"
        return _parsing(what, lambda d: cls(
            name=_text(d["name"], "name"),
            creation_timestamp=_int(d.get("creation_timestamp"), "creation_timestamp"),
            last_updated_timestamp=_int(d.get("last_updated_timestamp"), "last_updated_timestamp"),
            description=_text(d.get("description"), "description"),
            user_id=_text(d.get("user_id"), "user_id"),
            tags=_tags(d.get("tags")),
            aliases=dict(_alias(a) for a in _list(d.get("aliases"), "aliases")),
        ), d)


def _alias(item: Any) -> tuple[str, str]:
    item = _object(item, "aliases[]")
    return _text(item["alias"], "aliases[].alias"), _text(item["version"], "aliases[].version")


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
        """A registry version names it (`[]` or a malformed tag names none: it is unregistered)."""
        return bool(name_version_pairs(self.tags.get("mlflow.modelVersions") or ""))

    @classmethod
    def from_json(cls, d: dict) -> "LoggedModel":
        info = d.get("info") if isinstance(d, dict) else None
        what = f"logged model {_name_of(info.get('model_id') if isinstance(info, dict) else None)}"
        return _parsing(what, cls._parse, d)

    @classmethod
    def _parse(cls, d: dict) -> "LoggedModel":
        info, data = _object(d.get("info"), "info"), _object(d.get("data"), "data")
        metrics = []
        for index, m in enumerate(_list(data.get("metrics"), "data.metrics")):
            where = f"data.metrics[{index}]"
            metrics.append(LoggedMetric(key=_text(_keyed_item(m, where)["key"], f"{where}.key"),
                                        value=_float(m.get("value", "NaN"), f"{where}.value"),
                                        dataset_name=_text(m.get("dataset_name"), f"{where}.dataset_name"),
                                        dataset_digest=_text(m.get("dataset_digest"), f"{where}.dataset_digest"),
                                        run_id=_text(m.get("run_id"), f"{where}.run_id"), order=_order(m)))
        return cls(
            model_id=_text(info["model_id"], "info.model_id"),
            experiment_id=_text(info.get("experiment_id", ""), "info.experiment_id"),
            name=_text(info.get("name", ""), "info.name"),
            artifact_uri=_text(info.get("artifact_uri", ""), "info.artifact_uri"),
            status=_text(info.get("status", ""), "info.status"),
            model_type=_text(info.get("model_type"), "info.model_type"),
            source_run_id=_text(info.get("source_run_id"), "info.source_run_id"),
            creation_timestamp=_int(info.get("creation_timestamp_ms"), "info.creation_timestamp_ms"),
            last_updated_timestamp=_int(info.get("last_updated_timestamp_ms"), "info.last_updated_timestamp_ms"),
            tags=_tags(info.get("tags"), "info.tags"),
            params=_pairs(data.get("params"), "data.params"),
            metrics=metrics,
        )
