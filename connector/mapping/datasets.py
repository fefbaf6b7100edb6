"""Datasets a run logged with log_input -> dataset entities on the mlflow platform,
each with an upstream to the dataset where the data lives (s3, gcs, redshift, ...).

A dataset is identified by its name *and* its source (MLflow names are not unique: every
unnamed dataset is called `dataset`), so two datasets named `train` from different places are
two entities, and a retrain on the same source (new data, new digest) is the same one.
`dataset_urn: name` keys them by name alone, as DataHub's own MLflow source does."""
from __future__ import annotations

import functools
import json
from typing import Iterator, Optional
from urllib.parse import unquote, urlsplit

from connector.mapping import urns
from connector.mapping.evaluation import evaluation_source_key
from connector.mapping.common import MappingContext, Mcp, mcp, platform_instance_aspect, sorted_props, status
from connector.mapping.platforms import DATAHUB_PLATFORMS, SOURCE_TYPE_PLATFORMS
from connector.source.evaluation import evaluation_dataset_id
from connector.source.mlflow_objects import DatasetInput, LoggedDataset

# MLflow colspec types -> the catalog's schema field types
_FIELD_TYPES = {
    "boolean": "BooleanType", "integer": "NumberType", "long": "NumberType",
    "float": "NumberType", "double": "NumberType", "string": "StringType",
    "binary": "BytesType", "datetime": "TimeType", "array": "ArrayType",
    "object": "RecordType", "map": "MapType",
}
_LOCAL_SOURCES = {"local", "code", ""}
FILE_PLATFORM = "file"
SOURCE_ID_LENGTH = 12  # hex digits of the source's GUID in a dataset URN


def dataset_source_key(dataset: LoggedDataset) -> dict:
    """What identifies a dataset beside its name: where its data lives; for data nothing
    locates (built in code), its source description and content digest; for an evaluation
    dataset, its id."""
    evaluation_id = evaluation_dataset_id(dataset.source_type, dataset.source)
    if evaluation_id:
        return evaluation_source_key(evaluation_id)
    location = dataset.source_table or dataset.source_uri
    if location:
        return {"source_type": dataset.source_type, "location": location}
    return {"source_type": dataset.source_type, "source": dataset.source, "digest": dataset.digest}


def dataset_source_label(dataset: LoggedDataset) -> str:
    """The dataset's source in words, for warnings."""
    location = dataset.source_table or dataset.source_uri
    return location or f"{dataset.source_type or 'unknown'} source {dataset.source or '-'} (digest {dataset.digest})"


def dataset_urn_for(ctx: MappingContext, dataset: LoggedDataset) -> str:
    """The run's input on the mlflow platform: NAME@ID with ID from its source, or NAME alone
    (`dataset_urn: name`)."""
    # keyed on what names the dataset: a cache keyed on the dataset itself kept 4,096 schemas
    return _dataset_urn(ctx.dataset_urn, ctx.env, ctx.platform_instance,
                        dataset.name, dataset.source_type, dataset.source, dataset.digest)


@functools.lru_cache(maxsize=4096)  # a few datasets, logged by thousands of runs
def _dataset_urn(naming: str, env: str, instance: Optional[str], name: str, source_type: str, source: str,
                 digest: str) -> str:
    if naming == "name":
        return urns.dataset_urn(urns.PLATFORM, name, env, instance=instance)
    source_key = dataset_source_key(LoggedDataset(name=name, digest=digest, source_type=source_type, source=source))
    source_id = urns.guid(source_key)[:SOURCE_ID_LENGTH]
    return urns.dataset_urn(urns.PLATFORM, f"{name}@{source_id}", env, instance=instance)


def _local_path(dataset: LoggedDataset) -> Optional[str]:
    """The file a local dataset was read from (a path or file: URI), or None."""
    uri = dataset.source_uri
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return unquote(parts.path) or None
    return uri if not parts.scheme or len(parts.scheme) == 1 else None  # C:\... is a path


def upstream_platform(ctx: MappingContext, source_type: str, dataset: Optional[LoggedDataset] = None) -> Optional[str]:
    source_type = (source_type or "").lower()
    if source_type in ctx.dataset_platform_mapping:
        return ctx.dataset_platform_mapping[source_type]
    if source_type == "local" and dataset is not None and _local_path(dataset):
        return FILE_PLATFORM  # a local file or CSV: DataHub's file platform, named by its path
    if source_type in _LOCAL_SOURCES:
        return None
    if source_type in SOURCE_TYPE_PLATFORMS:
        return SOURCE_TYPE_PLATFORMS[source_type]
    return source_type if source_type in DATAHUB_PLATFORMS else None


def _upstream_name(dataset: LoggedDataset, platform: str) -> str:
    """Where the data lives (a table name, bucket/path for object stores, a local file's path),
    else the dataset's name."""
    if dataset.source_table:
        return dataset.source_table
    if platform == FILE_PLATFORM and _local_path(dataset):
        return str(_local_path(dataset))
    uri = dataset.source_uri
    if uri:
        parts = urlsplit(uri)
        if parts.scheme and parts.netloc:
            return f"{parts.netloc}{parts.path}".rstrip("/")
    return dataset.name


def _columns(dataset: LoggedDataset) -> Optional[list[dict]]:
    try:
        schema = json.loads(dataset.schema) if dataset.schema else {}
    except ValueError:
        return None
    colspec = schema.get("mlflow_colspec") if isinstance(schema, dict) else None
    if not isinstance(colspec, list):
        return None
    fields: list[dict] = []
    for i, col in enumerate(colspec):
        if not isinstance(col, dict):
            continue  # a malformed column: the others are still the schema
        native = col.get("type") if isinstance(col.get("type"), str) else json.dumps(col.get("type"))
        fields.append({
            "fieldPath": str(col.get("name") or f"column_{i}"),
            "nullable": not col.get("required", True),
            "type": {"type": {f"com.linkedin.schema.{_FIELD_TYPES.get(str(native), 'StringType')}": {}}},
            "nativeDataType": native,
        })
    return fields or None


def map_dataset(ctx: MappingContext, dataset_input: DatasetInput) -> Iterator[Mcp]:
    dataset = dataset_input.dataset
    urn = dataset_urn_for(ctx, dataset)
    custom = {"digest": dataset.digest, "source_type": dataset.source_type, "source": dataset.source,
              "profile": dataset.profile}
    columns = _columns(dataset)
    if columns is None and dataset.schema:
        custom["schema"] = dataset.schema
    yield mcp(urn, "datasetProperties", {
        "name": dataset.name,
        "customProperties": sorted_props({k: v for k, v in custom.items() if v}),
        "tags": [],
    })
    if columns:
        yield mcp(urn, "schemaMetadata", {
            "schemaName": dataset.name,
            "platform": urns.platform_urn(),
            "version": 0,
            "created": {"time": 0, "actor": "urn:li:corpuser:unknown"},
            "lastModified": {"time": 0, "actor": "urn:li:corpuser:unknown"},
            "hash": dataset.digest,
            "platformSchema": {"com.linkedin.schema.OtherSchema": {"rawSchema": dataset.schema}},
            "fields": columns,
        })
    platform = upstream_platform(ctx, dataset.source_type, dataset)
    if platform:
        yield mcp(urn, "upstreamLineage", {"upstreams": [{
            "auditStamp": {"time": 0, "actor": "urn:li:corpuser:unknown"},
            "dataset": urns.dataset_urn(platform, _upstream_name(dataset, platform), ctx.env),
            "type": "COPY",
        }]})
    yield mcp(urn, "dataPlatformInstance", platform_instance_aspect(ctx))
    yield mcp(urn, "status", status())
