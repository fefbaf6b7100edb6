"""Fast and offline: the source's HTTP traffic replayed from cassettes recorded from a real
server (`make cassettes` re-records them), through the whole pipeline to a validated file."""
import json

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from tests.cassettes import CASSETTE, SEEDED_FACTS, recorder
from tests.catalog_validation import validate_file
from tests.expectations import expected_urns
from tests.seeding import Seeded


def test_replayed_crawl_produces_the_expected_catalog(tmp_path):
    facts = json.loads(SEEDED_FACTS.read_text())
    seeded = Seeded(runs=facts["runs"], experiments=facts["experiments"])
    out = tmp_path / "replayed.json"
    # vcrpy is not thread-safe: replay with one request at a time
    config = {"tracking_uri": facts["tracking_uri"], "max_workers": 1}
    recipe = parse_recipe({"source": {"type": "mlflow", "config": config},
                           "sink": {"type": "file", "config": {"filename": str(out)}}})
    with recorder("none").use_cassette(str(CASSETTE)) as cassette:
        report = run_ingest(recipe)
        assert cassette.all_played  # every recorded request was made again, none new
    assert report.ok, report.failures
    records = validate_file(out)
    assert {r["entityUrn"] for r in records} == expected_urns(seeded)
    assert report.source_requests == len(cassette.data) and report.source_retries == 0
