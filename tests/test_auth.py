"""Credentials against a real MLflow server with its basic-auth app."""
import json
import os
import subprocess
import sys

import pytest

from tests.expectations import exp_urn
from tests.conftest import ADMIN, PASSWORD

pytestmark = pytest.mark.server
CLI = [sys.executable, "-m", "connector.cli"]


def run(write_recipe, tmp_path, url, password, name):
    recipe = write_recipe(json.dumps({
        "source": {"type": "mlflow", "config": {"tracking_uri": url, "username": ADMIN,
                                                "password": "${TEST_MLFLOW_PASSWORD}"}},
        "sink": {"type": "file", "config": {"filename": str(tmp_path / f"{name}.json")}}}), f"{name}.yml")
    env = {**os.environ, "TEST_MLFLOW_PASSWORD": password}
    report = tmp_path / f"{name}.report.json"
    proc = subprocess.run(CLI + ["ingest", "-c", str(recipe), "--report-file", str(report)],
                          capture_output=True, text=True, timeout=120, env=env)
    return proc, report


def test_username_and_password_from_the_environment(auth_server, write_recipe, tmp_path):
    proc, _ = run(write_recipe, tmp_path, auth_server, PASSWORD, "good")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    urns = {r["entityUrn"] for r in json.loads((tmp_path / "good.json").read_text())}
    assert exp_urn("secured-exp") in urns
    assert PASSWORD not in proc.stdout + proc.stderr


def test_wrong_password_is_rejected_clearly_and_never_shown(auth_server, write_recipe, tmp_path):
    proc, report = run(write_recipe, tmp_path, auth_server, "not-the-password-42", "bad")
    assert proc.returncode == 1
    assert f"MLflow at {auth_server} rejected the credentials (HTTP 401)" in proc.stderr
    assert not (tmp_path / "bad.json").exists()
    for text in (proc.stdout, proc.stderr, report.read_text()):
        assert "not-the-password-42" not in text and PASSWORD not in text
