"""DataHub's own aspect classes as SDK arguments (`models.MLModelPropertiesClass(...)` from
acryl-datahub's schema_classes, as DataHub's ML tutorial passes them). Duck-typed: an object
with `ASPECT_NAME` and `to_obj()`, so the connector does not depend on acryl-datahub."""
from __future__ import annotations

import json
from typing import Any, Callable, Optional


def is_datahub_aspect(value: Any) -> bool:
    return isinstance(getattr(value, "ASPECT_NAME", None), str) and callable(getattr(value, "to_obj", None))


def _given(aspect: dict) -> dict:
    """The fields that say something: to_obj() also writes empty defaults ({} / []), which a
    merge would take as "clear this"."""
    return {k: v for k, v in aspect.items() if v is not None and v != {} and v != []}


def properties_aspect(value: Any, aspect_name: str, argument: str, ours: type,
                      to_aspect: Callable[[Any], dict]) -> Optional[dict]:
    """The aspect JSON of `value`: one of our typed models (`ours`, turned by `to_aspect`) or
    DataHub's class for `aspect_name`. None when no value was given."""
    if value is None:
        return None
    if isinstance(value, ours):
        return to_aspect(value)
    if is_datahub_aspect(value):
        if value.ASPECT_NAME != aspect_name:
            raise TypeError(f"{argument}: expected {aspect_name} properties, got {type(value).__name__} "
                            f"(the {value.ASPECT_NAME} aspect)")
        return _given(json.loads(json.dumps(value.to_obj())))
    raise TypeError(f"{argument}: expected {ours.__name__} or DataHub's {aspect_name} class, "
                    f"got {type(value).__name__}")
