"""The file sink encodes each record with the C encoder (JSONEncoder.encode); the bytes must be the
ones json.dump (the pure-Python encoder it replaced) wrote, odd values included, and NaN or an
infinity must still be refused."""
import io
import json
import math

import pytest

from connector.mapping.common import Mcp
from connector.sinks.file import FileSink, file_record

ODD_ASPECTS = [
    {"name": "ünïcødé ✓ 模型 \U0001f680", "escapes": "tab\t nl\n quote\" back\\ nul\x00 del\x7f \u2028"},
    {"floats": [0.1, 1e-7, 1e16, 1.0, -0.0, 123456789.123456789, 5e-324, 1.7976931348623157e308, 2.5e-05]},
    {"ints": [2**63, -(2**64) - 1, 10**30, 0, True, False, None]},
    {"nested": {"b": [], "a": {}, "z": [{"k": "v"}], "": ""}, "order": {"z": 1, "a": 2, "m": 3}},
]


def written_by_json_dump(records: list[dict]) -> str:
    """What the sink wrote before: '[', records joined by ',\\n' after a newline, then '\\n]\\n'."""
    out = io.StringIO()
    out.write("[")
    for index, record in enumerate(records):
        out.write(",\n" if index else "\n")
        json.dump(record, out, ensure_ascii=False, allow_nan=False)
    out.write("\n]\n")
    return out.getvalue()


def test_file_sink_writes_the_bytes_json_dump_wrote_for_odd_values(tmp_path):
    target = tmp_path / "out.json"
    sink = FileSink(str(target))
    proposals = [Mcp(f"urn:li:mlModel:(urn:li:dataPlatform:mlflow,m{i},PROD)", "mlModelProperties", aspect)
                 for i, aspect in enumerate(ODD_ASPECTS)]
    system_metadata = {"runId": "r-ü", "lastObserved": 1_700_000_000_000}
    for proposal in proposals:
        sink.write(proposal, system_metadata)
    assert sink.commit().delivered == len(proposals)
    expected = written_by_json_dump([file_record(p, system_metadata) for p in proposals])
    assert target.read_bytes() == expected.encode("utf-8")
    assert "ünïcødé ✓ 模型 \U0001f680" in target.read_text(encoding="utf-8")  # not \u-escaped
    assert json.loads(target.read_text())[1]["aspect"]["json"]["floats"][0] == 0.1


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_file_sink_still_refuses_nan_and_infinity(tmp_path, bad):
    sink = FileSink(str(tmp_path / "out.json"))
    with pytest.raises(ValueError, match="not JSON compliant"):
        sink.write(Mcp("urn:li:mlModel:(urn:li:dataPlatform:mlflow,m,PROD)", "mlModelProperties",
                       {"value": bad}), {})
    assert sink.abort().delivered == 0
    assert not (tmp_path / "out.json").exists()
