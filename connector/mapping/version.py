"""The version of what mapping makes of MLflow data. Whoever changes the mapping's output (a new
aspect, a value mapped differently, other URNs) bumps MAPPING_VERSION: the next run of every
pipeline with a state is then a full crawl that re-sends everything once (an incremental run only
re-sends what changed in MLflow, so entities mapped differently would otherwise keep the old
values in the catalog). tests/test_mapping_version.py fails when the golden output changes and
this number does not."""

MAPPING_VERSION = 2  # 2: GenAI evaluation runs (subtype, scorers; evaluation dataset inputs keyed by id)
