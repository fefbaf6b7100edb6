"""The mapping's version follows its output: when the golden proposals change (an intended mapping
change, goldens regenerated), MAPPING_VERSION (connector/mapping/version.py) must be bumped, so that
pipelines with a state re-send everything once after the upgrade. tests/golden/mapping-version.json
records the version and a digest of the golden proposals it goes with."""
import hashlib
import json
from pathlib import Path

from connector.mapping.version import MAPPING_VERSION

GOLDEN = Path(__file__).parent / "golden"
RECORD = GOLDEN / "mapping-version.json"


def golden_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(GOLDEN.glob("*-[0-9]*.json")):
        proposals = json.loads(path.read_text(encoding="utf-8"))["proposals"]
        digest.update(path.name.encode() + json.dumps(proposals, sort_keys=True).encode())
    return digest.hexdigest()


def test_golden_output_changes_only_with_a_new_mapping_version():
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    digest = golden_digest()
    fix = (f"bump MAPPING_VERSION in connector/mapping/version.py (now {MAPPING_VERSION}) and write the new "
           f"version and digest {digest} into {RECORD.relative_to(GOLDEN.parent.parent)}")
    if digest != record["golden_proposals_sha256"]:
        assert MAPPING_VERSION > record["mapping_version"], f"the golden proposals changed: {fix}"
    assert (MAPPING_VERSION, digest) == (record["mapping_version"], record["golden_proposals_sha256"]), fix

