"""`mlflow-catalog ingest` reaches its first MLflow request without importing MLflow, DataHub or
the lineage page's code: a fresh interpreter imports what the CLI's ingest path imports before
the crawl starts, and none of them is loaded."""
import json
import subprocess
import sys

HEAVY = ("mlflow", "datahub", "avro", "sqlalchemy", "pandas", "numpy", "connector.lineage")


def test_the_ingest_path_imports_no_heavy_module():
    code = ("import sys, json; import connector.cli, connector.pipeline, connector.sinks.file, connector.config.recipe; "
            "print(json.dumps(sorted(m for m in sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True).stdout)
    assert "connector.pipeline" in loaded and "pydantic" in loaded
    assert [m for m in loaded if m.split(".")[0] in HEAVY or m.startswith(HEAVY)] == []
