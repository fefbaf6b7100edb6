"""Our raw MCPs in DataHub's class, with a `to_obj` and a `validate` that skip avrogen's generic paths.

DataHub's pipeline calls `validate()` on every work unit (its record extractor) and its sinks
call `to_obj()` (the file sink keeps the result, the REST sink posts it). avrogen does both by
walking the Avro schema generically on every call: `validate` re-reads each union's members,
each record's fields and each enum's symbols, `to_obj` validates the whole record once more,
then converts every field's JSON default again each time. Together they were the largest part of
a `datahub ingest` run of our source. Here the same answers come from the schema read once:
`to_obj` builds the dict the way avrogen builds it (fields in schema order, a field left out
when it is None and its default is None, bytes decoded; plain dicts, which serialise the same as
avrogen's OrderedDicts and take half the memory in the file sink's list), and `validate` applies
avrogen's rules per schema node from a checker compiled once per schema. Anything else (a value
DataHub put there that is not plain, a plain dict where a record is expected) takes avrogen's path.
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from avrogen.avrojson import get_global_json_converter
from avrogen.dict_wrapper import DictWrapper
from datahub.emitter.aspect import JSON_CONTENT_TYPE
from datahub.metadata.schema_classes import GenericAspectClass, MetadataChangeProposalClass, SystemMetadataClass

_PLAIN = (str, int, float)  # bool is an int


class _NotPlain(Exception):
    pass


_FIELDS: dict[type, tuple] = {}


def _fields(record_class: type[DictWrapper]) -> tuple:
    """(name, has a default, default) of each field, in schema order; read once per class."""
    fields = _FIELDS.get(record_class)
    if fields is None:
        fields = _FIELDS[record_class] = tuple((field.name, field.has_default, field.default)
                                               for field in record_class.RECORD_SCHEMA.fields)
    return fields


def _record(obj: DictWrapper) -> dict:
    out: dict = {}
    for name, has_default, default in _fields(type(obj)):
        value = obj._inner_dict.get(name, default)
        if value is None:
            if has_default and default is None:
                continue
            raise _NotPlain(name)
        out[name] = _value(value)
    return out


def _value(value):
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, DictWrapper):
        return _record(value)
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    raise _NotPlain(type(value).__name__)


Check = Callable[[Any], bool]
_CHECKS: dict[int, Check] = {}


def checker(schema) -> Check:
    """avrogen's `validate(schema, datum)` for one schema node, its lookups done once."""
    key = id(schema)
    if key not in _CHECKS:
        _CHECKS[key] = lambda datum: _CHECKS[key](datum)  # a record that refers to itself
        _CHECKS[key] = _compile(schema)
    return _CHECKS[key]


def _avrogen(schema) -> Check:
    converter = get_global_json_converter()
    return lambda datum: converter.validate(schema, datum)


def _compile(schema) -> Check:
    converter = get_global_json_converter()
    if converter.use_logical_types and schema.props.get("logicalType") in converter.logical_types:
        return _avrogen(schema)
    build = _BUILDERS.get(schema.type)
    return build(schema) if build is not None else _avrogen(schema)  # arrays: never in the envelope


def _map_check(schema) -> Check:
    values = checker(schema.values)
    return lambda datum: (isinstance(datum, dict) and all(isinstance(k, str) for k in datum)
                          and all(values(v) for v in datum.values()))


def _enum_check(schema) -> Check:
    symbols = frozenset(schema.symbols)
    return lambda datum: isinstance(datum, str) and datum in symbols


def _leaf_check(schema) -> Check:
    """What avro's own validate asks of a leaf (ints in range, a fixed's size, ...)."""
    return lambda datum: schema.validate(datum) is not None


def _record_check(schema) -> Check:
    fields = tuple((field.name, checker(field.type)) for field in schema.fields)
    as_avrogen = _avrogen(schema)

    def check(datum) -> bool:
        if not isinstance(datum, DictWrapper):  # a plain dict: avrogen fills in the defaults first
            return as_avrogen(datum)
        get = datum._inner_dict.get
        for name, field_check in fields:
            if not field_check(get(name)):
                return False
        return True
    return check


def _union(schema) -> Check:
    members = tuple((member, checker(member)) for member in schema.schemas)
    records = {member.fullname: check for member, check in members if member.type == "record"}
    others = tuple(check for member, check in members if member.type != "null")
    nullable = len(others) < len(members)
    as_avrogen = _avrogen(schema)

    def check(datum) -> bool:
        if datum is None:
            return nullable
        if isinstance(datum, DictWrapper):  # avrogen matches a record by its declared schema's name
            matched = records.get(type(datum).RECORD_SCHEMA.fullname)
            if matched is not None:
                return matched(datum)
        elif isinstance(datum, dict):  # avrogen first tries a one-key dict as {type name: value}
            return as_avrogen(datum)
        for member_check in others:
            if member_check(datum):
                return True
        return False
    return check


_BUILDERS: dict[str, Callable[[Any], Check]] = {
    "record": _record_check, "union": _union, "map": _map_check, "enum": _enum_check,
    "string": lambda schema: lambda datum: isinstance(datum, str),
    "null": lambda schema: lambda datum: datum is None,
    # avrogen takes a str for bytes (JSON carries bytes as a string)
    "bytes": lambda schema: lambda datum: isinstance(datum, str) or schema.validate(datum) is not None,
    **{kind: _leaf_check for kind in ("long", "int", "boolean", "float", "double", "fixed")},
}


R = TypeVar("R", bound=DictWrapper)


def _built(record_class: type[R], inner_dict: dict) -> R:
    record = object.__new__(record_class)
    record._inner_dict = inner_dict
    return record


_SYSTEM_METADATA_DEFAULTS = SystemMetadataClass()._inner_dict


class FastToObjMcp(MetadataChangeProposalClass):
    """A MetadataChangeProposalClass whose `to_obj()` and `validate()` give avrogen's answers
    without its schema walk."""

    __slots__ = ()

    @classmethod
    def json_upsert(cls, entity_type: str, entity_urn: str, aspect_name: str, aspect_json: bytes,
                    system_metadata: dict) -> "FastToObjMcp":
        """What `cls(entityType=..., entityUrn=..., changeType="UPSERT", aspectName=..., aspect=
        GenericAspectClass(contentType=JSON, value=aspect_json), systemMetadata=SystemMetadataClass(
        **system_metadata))` builds, without avrogen's constructors (a setter call per field, the
        schema's defaults read again each time): a field given as None takes its default there too."""
        unknown = system_metadata.keys() - _SYSTEM_METADATA_DEFAULTS.keys()
        if unknown:
            raise TypeError(f"SystemMetadata has no field {sorted(unknown)[0]}")
        if not SHORTCUTS_HOLD:
            return cls(entityType=entity_type, entityUrn=entity_urn, changeType="UPSERT", aspectName=aspect_name,
                       aspect=GenericAspectClass(contentType=JSON_CONTENT_TYPE, value=aspect_json),
                       systemMetadata=SystemMetadataClass(**system_metadata))
        given = {name: value for name, value in system_metadata.items() if value is not None}
        return _built(cls, {
            "auditHeader": None, "entityType": entity_type, "entityUrn": entity_urn, "entityKeyAspect": None,
            "changeType": "UPSERT", "aspectName": aspect_name,
            "aspect": _built(GenericAspectClass, {"value": aspect_json, "contentType": JSON_CONTENT_TYPE}),
            "systemMetadata": _built(SystemMetadataClass, {**_SYSTEM_METADATA_DEFAULTS, **given}),
            "headers": None})

    def to_obj(self, tuples: bool = False) -> dict:
        if not tuples and SHORTCUTS_HOLD:
            try:
                return _record(self)
            except _NotPlain:
                pass
        return super().to_obj(tuples)

    def validate(self) -> bool:
        if not SHORTCUTS_HOLD:
            return super().validate()
        return checker(self.RECORD_SCHEMA)(self)


def _shortcuts_hold() -> bool:
    """The shortcuts read and build avrogen's records through `_inner_dict`, which is avrogen's
    own: checked once, at import, against DataHub's public constructors, `to_obj` and `validate`.
    An acryl-datahub whose records differ gets the public paths (slower, same output)."""
    system_metadata: dict[str, Any] = {"lastObserved": 1, "runId": "check"}
    try:
        fast = FastToObjMcp.json_upsert("mlModel", "urn:li:mlModel:(urn:li:dataPlatform:mlflow,m,PROD)", "status",
                                        b'{"removed": false}', system_metadata)
        public = MetadataChangeProposalClass(
            entityType="mlModel", entityUrn="urn:li:mlModel:(urn:li:dataPlatform:mlflow,m,PROD)", changeType="UPSERT",
            aspectName="status", aspect=GenericAspectClass(contentType=JSON_CONTENT_TYPE, value=b'{"removed": false}'),
            systemMetadata=SystemMetadataClass(**system_metadata))
        broken = _built(FastToObjMcp, {**fast._inner_dict, "changeType": 7})
        return (fast.to_obj() == public.to_obj() and fast.validate() is True and public.validate() is True
                and broken.validate() is False and MetadataChangeProposalClass.validate(broken) is False)
    except Exception:  # an attribute or a signature avrogen no longer has
        return False


SHORTCUTS_HOLD = True  # for the check itself
SHORTCUTS_HOLD = _shortcuts_hold()
