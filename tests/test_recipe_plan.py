"""What the Airflow DAG factory reads from a folder of recipes at parse time (no Airflow needed)."""
import json
import subprocess
import sys

import pytest

from connector.integrations.recipe_plan import plan_folder, pool_commands


def write(folder, name, data):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")


def test_names_and_pools_of_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TEAM_A_MLFLOW", "https://user:pw@mlflow-a.example.com/team-a")
    monkeypatch.delenv("UNSET_GMS", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    folder = tmp_path / "recipes"
    write(folder, "team a.yml", {"source": {"type": "mlflow", "config": {"tracking_uri": "${TEAM_A_MLFLOW}"}},
                                 "sink": {"type": "datahub-rest", "config": {"server": "http://gms:8080"}}})
    write(folder, "team-b.yaml", {"source": {"type": "mlflow", "config": {"tracking_uri": "http://mlflow-b:5000"}},
                                  "sink": {"type": "datahub-rest", "config": {"server": "${UNSET_GMS}"}}})
    write(folder, "team-c.yml", {"source": {"type": "mlflow", "config": {"tracking_uri": "http://mlflow-b:5000"}},
                                 "sink": {"type": "file", "config": {"filename": "o.json"}}})
    write(folder, "broken.yml", "source: [unclosed")  # still a task: it fails with the YAML error when it runs
    write(folder, "notes.txt", "not a recipe")
    plans = {p.name: p for p in plan_folder(folder)}
    assert sorted(plans) == ["broken", "team-b", "team-c", "team_a"]
    assert plans["team_a"].tracking_pool == "mlflow_catalog_mlflow_mlflow-a.example.com_443"  # no credentials
    assert plans["team_a"].pool("gms") == "mlflow_catalog_gms_gms_8080"
    assert plans["team_a"].pool("tracking_server") == "mlflow_catalog_mlflow_mlflow-a.example.com_443"
    assert plans["team-b"].pool("gms") == "mlflow_catalog_gms_UNSET_GMS"  # unknown here: a stable name
    assert plans["team-c"].pool("gms") == plans["team-b"].tracking_pool == "mlflow_catalog_mlflow_mlflow-b_5000"
    assert plans["broken"].pool("gms") == "mlflow_catalog_mlflow_MLFLOW_TRACKING_URI"
    with pytest.raises(ValueError, match="pool_by: expected 'gms' or 'tracking_server', got 'sink'"):
        plans["team_a"].pool("sink")
    assert pool_commands(folder, 2) == [
        f'airflow pools set {name} 2 "mlflow-catalog: runs at once against this server"' for name in (
            "mlflow_catalog_gms_UNSET_GMS", "mlflow_catalog_gms_gms_8080", "mlflow_catalog_mlflow_MLFLOW_TRACKING_URI",
            "mlflow_catalog_mlflow_mlflow-a.example.com_443", "mlflow_catalog_mlflow_mlflow-b_5000")]


def test_name_clashes_and_a_missing_folder_are_clear_errors(tmp_path):
    write(tmp_path / "r", "a b.yml", {})
    write(tmp_path / "r", "a_b.yaml", {})
    with pytest.raises(ValueError, match="share a name once made an Airflow id: a_b"):
        plan_folder(tmp_path / "r")
    proc = subprocess.run([sys.executable, "-m", "connector.integrations.recipe_plan", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and f"recipes folder {tmp_path / 'nope'} does not exist" in proc.stderr
