"""What the GenAI tests share: an ingest to a file whose output DataHub's classes validate."""
from connector.config.recipe import parse_recipe
from connector.pipeline import run_ingest
from tests.catalog_validation import validate_file


def ingest_aspects(url, out, **config):
    """(URN -> aspect name -> value, report) of an ingest of `url` with these source settings."""
    report = run_ingest(parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": url, **config}},
                                      "sink": {"type": "file", "config": {"filename": str(out)}}}))
    assert report.ok, report.failures
    by_urn: dict = {}
    for r in validate_file(out):
        by_urn.setdefault(r["entityUrn"], {})[r["aspectName"]] = r["aspect"]["json"]
    return by_urn, report
