"""vcrpy set-up shared by the recorder (`make cassettes`) and the replay test."""
from pathlib import Path

import vcr

CASSETTE_DIR = Path(__file__).parent / "cassettes"
CASSETTE = CASSETTE_DIR / "seeded_ingest.yaml"
SEEDED_FACTS = CASSETTE_DIR / "seeded_facts.json"  # tracking URI and ids the seed produced


def recorder(record_mode: str) -> vcr.VCR:
    return vcr.VCR(
        record_mode=record_mode,
        match_on=["method", "scheme", "host", "port", "path", "query", "body"],
        filter_headers=["authorization", "cookie"],
        decode_compressed_response=True,
    )
