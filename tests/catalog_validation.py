"""Check proposals with the catalog's own library (acryl-datahub), not with our code."""
from __future__ import annotations

import json
from pathlib import Path

from datahub.cli.json_file import check_mce_file
from datahub.emitter.serialization_helper import post_json_transform, pre_json_transform
from datahub.metadata import schema_classes
from datahub.metadata.urns import Urn


def _sdk_answers_attribute_error() -> None:
    """The metadata-file check loads `datahub.sdk` into the test process, whose module __getattr__
    answers an unknown name with KeyError (acryl-datahub 1.7) instead of AttributeError: a later
    import that looks names up across every loaded module (skops, under mlflow.sklearn.log_model in
    the team seeding) then fails. Give it the AttributeError Python expects."""
    import datahub.sdk as sdk

    lookup = getattr(sdk, "__getattr__", None)
    if lookup is None or getattr(lookup, "answers_attribute_error", False):
        return

    def __getattr__(name: str):
        try:
            return lookup(name)
        except KeyError:
            raise AttributeError(f"module 'datahub.sdk' has no attribute {name!r}") from None

    __getattr__.answers_attribute_error = True  # type: ignore[attr-defined]
    sdk.__getattr__ = __getattr__  # type: ignore[attr-defined]


_sdk_answers_attribute_error()


def _urns_in(value):
    if isinstance(value, str):
        if value.startswith("urn:li:"):
            yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _urns_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from _urns_in(v)


def _is_subset(ours, theirs, path="aspect") -> None:
    """Every field we wrote survives the schema class round trip unchanged (catches misspelt keys)."""
    if isinstance(ours, dict):
        assert isinstance(theirs, dict), f"{path}: expected an object"
        for key, value in ours.items():
            assert key in theirs, f"{path}.{key}: not a field of the schema"
            _is_subset(value, theirs[key], f"{path}.{key}")
    elif isinstance(ours, list):
        assert len(ours) == len(theirs), f"{path}: list changed"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            _is_subset(a, b, f"{path}[{i}]")
    else:
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"


def validate_proposal(record: dict, aspect: dict) -> None:
    urn = record["entityUrn"]
    parsed = Urn.from_string(urn)
    assert parsed.entity_type == record["entityType"], urn
    key_class = schema_classes.KEY_ASPECTS[record["entityType"]]
    allowed = key_class.ASPECT_INFO["entityAspects"]
    assert record["aspectName"] in allowed, f"{record['aspectName']} not an aspect of {record['entityType']}"
    aspect_class = schema_classes.ASPECT_NAME_MAP[record["aspectName"]]
    # The wire spells unions `com.linkedin.schema.X`; the Avro classes `com.linkedin.pegasus2avro...`.
    obj = aspect_class.from_obj(post_json_transform(aspect))
    assert obj.validate(), f"{urn} {record['aspectName']} does not validate"
    _is_subset(aspect, pre_json_transform(obj.to_obj()))
    for inner in _urns_in(aspect):
        Urn.from_string(inner)
    assert record["changeType"] == "UPSERT"
    assert set(record["systemMetadata"]) >= {"lastObserved", "runId"}


def validate_file(path: Path) -> list[dict]:
    """Validate a file as `datahub check metadata-file` does (its own function, called in this
    process: the same check without starting the datahub CLI each time); return the proposals."""
    assert "all valid" in check_mce_file(str(path))
    records = json.loads(Path(path).read_text(encoding="utf-8"))
    for record in records:
        validate_proposal(record, record["aspect"]["json"])
    return records
