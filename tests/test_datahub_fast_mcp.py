"""The plugin's work units give DataHub's sinks exactly what avrogen's own `to_obj` gives, only
faster: checked on every proposal of the golden scenarios (every aspect kind we emit), with the
systemMetadata DataHub's pipeline fills in, and through DataHub's file sink's record form."""
import json
from pathlib import Path

import pytest
from datahub.ingestion.sink.file import _to_obj_for_file
from datahub.metadata.schema_classes import (
    AuditStampClass, GenericAspectClass, MetadataChangeProposalClass, SystemMetadataClass,
)

from connector.integrations.datahub_mcp import FastToObjMcp
from connector.integrations.datahub_source import raw_workunit
from connector.mapping.common import Mcp

GOLDEN = Path(__file__).parent / "golden"
PROPOSALS = [p for name in ("seeded-0.json", "mlflow3-0.json", "incremental-1.json")
             for p in json.loads((GOLDEN / name).read_text(encoding="utf-8"))["proposals"]]
SYSTEM_METADATA = [
    {"lastObserved": 1_700_000_000_000, "runId": "bench-2026_12_06-22_31_17-b935bf"},
    {"lastObserved": 0, "runId": "r", "pipelineName": "bench", "properties": {"a": "ü"}},
]


@pytest.mark.parametrize("system_metadata", SYSTEM_METADATA)
def test_fast_to_obj_equals_avrogens_for_every_golden_proposal(system_metadata):
    assert len({p["aspectName"] for p in PROPOSALS}) > 15
    for record in PROPOSALS:
        workunit = raw_workunit(Mcp(record["entityUrn"], record["aspectName"], record["aspect"]["json"]),
                                dict(system_metadata))
        mcp = workunit.metadata
        assert isinstance(mcp, FastToObjMcp)
        mcp.systemMetadata.lastRunId = "previous-run"  # what DataHub's pipeline sets on the way
        expected = MetadataChangeProposalClass.to_obj(mcp)
        got = mcp.to_obj()
        assert json.dumps(got) == json.dumps(expected), record["entityUrn"]
        assert _to_obj_for_file(mcp)["aspect"] == {"json": record["aspect"]["json"]}


def test_a_value_that_is_not_plain_takes_avrogens_path():
    mcp = raw_workunit(Mcp("urn:li:tag:t", "status", {"removed": False}), {"lastObserved": 1, "runId": "r"}).metadata
    mcp.systemMetadata.runId = None  # None where the default is not None: only avrogen knows its answer
    assert json.dumps(mcp.to_obj()) == json.dumps(MetadataChangeProposalClass.to_obj(mcp))
    assert mcp.to_obj()["systemMetadata"]["runId"] is None


@pytest.mark.parametrize("system_metadata", SYSTEM_METADATA)
def test_fast_validate_agrees_with_avrogens_for_every_golden_proposal(system_metadata):
    for record in PROPOSALS:
        mcp = raw_workunit(Mcp(record["entityUrn"], record["aspectName"], record["aspect"]["json"]),
                           dict(system_metadata)).metadata
        assert mcp.validate() is True
        assert MetadataChangeProposalClass.validate(mcp) is True


def _set(path: str, value):
    def change(mcp):
        *parents, name = path.split(".")
        target = mcp
        for parent in parents:
            target = getattr(target, parent)
        target._inner_dict[name] = value
    return change


# What DataHub's record extractor would be handed wrong (or oddly right): each answer must be avrogen's.
CHANGES = {
    "entityType None": _set("entityType", None),
    "entityUrn a number": _set("entityUrn", 5),
    "entityUrn None": _set("entityUrn", None),
    "changeType unknown": _set("changeType", "NOPE"),
    "changeType DELETE": _set("changeType", "DELETE"),
    "aspect value a number": _set("aspect.value", 123),
    "aspect value a str": _set("aspect.value", "{}"),
    "aspect a SystemMetadata": _set("aspect", SystemMetadataClass()),
    "aspect a plain dict": _set("aspect", {"value": "{}", "contentType": "application/json"}),
    "lastObserved a str": _set("systemMetadata.lastObserved", "1"),
    "lastObserved beyond a long": _set("systemMetadata.lastObserved", 2 ** 70),
    "lastObserved None": _set("systemMetadata.lastObserved", None),
    "properties not strings": _set("systemMetadata.properties", {"a": 1}),
    "properties one key": _set("systemMetadata.properties", {"string": "x"}),
    "headers strings": _set("headers", {"k": "v"}),
    "headers a list": _set("headers", ["k"]),
    "aspectCreated an AuditStamp": _set("systemMetadata.aspectCreated", AuditStampClass(time=1, actor="urn:li:corpuser:a")),
    "aspectCreated without actor": _set("systemMetadata.aspectCreated", AuditStampClass._construct({"time": 1})),
}


@pytest.mark.parametrize("change", CHANGES.values(), ids=CHANGES.keys())
def test_fast_validate_gives_avrogens_answer_for_a_changed_proposal(change):
    mcp = raw_workunit(Mcp("urn:li:tag:t", "status", {"removed": False}), {"lastObserved": 1, "runId": "r"}).metadata
    change(mcp)
    assert mcp.validate() is MetadataChangeProposalClass.validate(mcp)


def test_the_changes_include_wrong_and_right_proposals():
    answers = set()
    for change in CHANGES.values():
        mcp = raw_workunit(Mcp("urn:li:tag:t", "status", {"removed": False}), {"lastObserved": 1, "runId": "r"}).metadata
        change(mcp)
        answers.add(MetadataChangeProposalClass.validate(mcp))
    assert answers == {True, False}


@pytest.mark.parametrize("system_metadata", SYSTEM_METADATA + [{"lastObserved": None, "runId": "r", "version": None}])
def test_json_upsert_builds_what_avrogens_constructors_build(system_metadata):
    for record in PROPOSALS[:50]:
        value = json.dumps(record["aspect"]["json"]).encode()
        fast = FastToObjMcp.json_upsert(record["entityType"], record["entityUrn"], record["aspectName"], value,
                                        dict(system_metadata))
        slow = MetadataChangeProposalClass(
            entityType=record["entityType"], entityUrn=record["entityUrn"], changeType="UPSERT",
            aspectName=record["aspectName"], systemMetadata=SystemMetadataClass(**system_metadata),
            aspect=GenericAspectClass(contentType="application/json", value=value))
        assert fast._inner_dict == slow._inner_dict
        assert fast.systemMetadata._inner_dict == slow.systemMetadata._inner_dict
        assert type(fast.aspect) is GenericAspectClass and type(fast.systemMetadata) is SystemMetadataClass


def test_json_upsert_refuses_a_system_metadata_field_datahub_does_not_know():
    with pytest.raises(TypeError):
        SystemMetadataClass(lastObserved=1, runNumber="7")
    with pytest.raises(TypeError, match="runNumber"):
        FastToObjMcp.json_upsert("tag", "urn:li:tag:t", "status", b"{}", {"lastObserved": 1, "runNumber": "7"})


def test_the_shortcuts_hold_on_this_acryl_datahub_and_the_public_paths_give_the_same(monkeypatch):
    """The shortcuts use avrogen's `_inner_dict`: checked at import; where the check fails (a future
    acryl-datahub), DataHub's public constructors, to_obj and validate are used, with the same output."""
    from connector.integrations import datahub_mcp

    assert datahub_mcp.SHORTCUTS_HOLD is True
    fast = [raw_workunit(Mcp(r["entityUrn"], r["aspectName"], r["aspect"]["json"]), dict(SYSTEM_METADATA[1])).metadata
            for r in PROPOSALS[:80]]
    monkeypatch.setattr(datahub_mcp, "SHORTCUTS_HOLD", False)
    public = [raw_workunit(Mcp(r["entityUrn"], r["aspectName"], r["aspect"]["json"]), dict(SYSTEM_METADATA[1])).metadata
              for r in PROPOSALS[:80]]
    assert [json.dumps(m.to_obj()) for m in public] == [json.dumps(MetadataChangeProposalClass.to_obj(m)) for m in fast]
    assert all(m.validate() for m in public)
    public[0].changeType = "NOT_A_CHANGE_TYPE"
    assert public[0].validate() is False
