"""A model's signature input columns -> mlFeature entities, with the training datasets that
hold a column of the same name as the feature's sources."""
from __future__ import annotations

import json
from typing import Iterator

from connector.mapping import urns
from connector.mapping.common import MappingContext, Mcp, mcp, platform_instance_aspect, status
from connector.mapping.datasets import dataset_urn_for
from connector.source.mlflow_objects import DatasetInput

_DATA_TYPES = {"boolean": "BINARY", "integer": "COUNT", "long": "COUNT", "float": "CONTINUOUS",
               "double": "CONTINUOUS", "string": "TEXT", "binary": "BYTE", "datetime": "TIME"}


def feature_urn(ctx: MappingContext, namespace: str, column: dict) -> str:
    return urns.feature_urn(namespace, str(column["name"]), ctx.platform_instance)


def named_columns(columns: list) -> list[dict]:
    """The columns that can be features (a dict with a name); a malformed one drops only itself."""
    return [c for c in columns or [] if isinstance(c, dict) and str(c.get("name") or "").strip()]


def _columns_of(dataset_input: DatasetInput) -> set[str]:
    try:
        schema = json.loads(dataset_input.dataset.schema) if dataset_input.dataset.schema else {}
    except ValueError:
        return set()
    colspec = schema.get("mlflow_colspec") if isinstance(schema, dict) else None
    return {str(c.get("name")) for c in colspec or [] if isinstance(c, dict)}


def map_features(ctx: MappingContext, namespace: str, columns: list,
                 training_inputs: list[DatasetInput]) -> Iterator[tuple[str, list[Mcp]]]:
    """(feature URN, its proposals) for each signature column."""
    holders = [(dataset_urn_for(ctx, i.dataset), _columns_of(i)) for i in training_inputs]
    for column in named_columns(columns):
        name = str(column["name"])
        native = column.get("type") if isinstance(column.get("type"), str) else "object"
        urn = feature_urn(ctx, namespace, column)
        custom = {"mlflow_type": native, "required": str(column.get("required", True)).lower()}
        if urns.is_shortened(urn):  # too long for a URN: the URN holds a digest, these the names
            custom.update(full_name=name, full_namespace=namespace)
        props = {
            "customProperties": custom,
            "dataType": _DATA_TYPES.get(str(native), "UNKNOWN"),
            "sources": [d for d, names in holders if name in names],
        }
        yield urn, [mcp(urn, "mlFeatureProperties", props),
                    mcp(urn, "dataPlatformInstance", platform_instance_aspect(ctx)),
                    mcp(urn, "status", status())]
