"""The connector's output loaded into DataHub's embedded catalog (DataHub Lite, duckdb) with
DataHub's own `datahub ingest` (file source, datahub-lite sink), then read back with
`datahub lite get`: the champion version, its alias, its group and its training run."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connector.pipeline import run_ingest
from connector.config.recipe import parse_recipe
from tests.expectations import model_urn, run_urn

pytestmark = pytest.mark.server
DATAHUB = str(Path(sys.executable).parent / "datahub")


def datahub(home: Path, *args: str) -> str:
    env = {**os.environ, "HOME": str(home), "DATAHUB_TELEMETRY_ENABLED": "false"}
    proc = subprocess.run([DATAHUB, *args], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_champion_read_back_from_datahub_lite(team_server, tmp_path):
    out = tmp_path / "mlflow.json"
    report = run_ingest(parse_recipe({"source": {"type": "mlflow", "config": {"tracking_uri": team_server.url}},
                                      "sink": {"type": "file", "config": {"filename": str(out)}}}))
    assert report.ok, report.failures
    store = tmp_path / "lite.duckdb"
    lite = {"type": "duckdb", "config": {"file": str(store)}}
    # `datahub lite` reads its store from ~/.datahubenv, which must also hold a gms section
    (tmp_path / ".datahubenv").write_text(json.dumps({"gms": {"server": "http://127.0.0.1:9"}, "lite": lite}))
    recipe = tmp_path / "load.yml"
    recipe.write_text(json.dumps({"source": {"type": "file", "config": {"path": str(out)}},
                                  "sink": {"type": "datahub-lite", "config": lite}}))
    datahub(tmp_path, "ingest", "-c", str(recipe))

    def get(urn):
        return json.loads(datahub(tmp_path, "lite", "get", "--urn", urn))

    champion = get(model_urn("churn_classifier", 1))
    assert {"versionTag": "champion"} in champion["versionProperties"]["aliases"]
    group_urn = champion["mlModelProperties"]["groups"][0]
    assert group_urn == "urn:li:mlModelGroup:(urn:li:dataPlatform:mlflow,churn_classifier,PROD)"
    assert get(group_urn)["mlModelGroupProperties"]["version"]["versionTag"] == "1"
    assert champion["mlModelProperties"]["trainingJobs"] == [run_urn(team_server.runs["trial_b"])]
    run = get(run_urn(team_server.runs["trial_b"]))
    assert run["dataProcessInstanceProperties"]["name"] == "C=1.0"
    assert run["dataProcessInstanceRelationships"]["parentInstance"] == run_urn(team_server.runs["parent"])
