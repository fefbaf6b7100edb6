"""The plugin's work units give DataHub's sinks exactly what avrogen's own `to_obj` gives, only
faster: checked on every proposal of the golden scenarios (every aspect kind we emit), with the
systemMetadata DataHub's pipeline fills in, and through DataHub's file sink's record form."""
import json
from pathlib import Path

import pytest
from datahub.ingestion.sink.file import _to_obj_for_file
from datahub.metadata.schema_classes import MetadataChangeProposalClass

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
