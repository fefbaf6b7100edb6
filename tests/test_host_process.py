"""The connector as a library inside someone else's process (DataHub's Pipeline, Airflow, the SDK):
importing it changes nothing in that process's environment."""
import os
import subprocess
import sys

QUIET = ("MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK")
MODULES = ("connector", "connector.pipeline", "connector.sdk", "connector.cli", "connector.integrations.datahub_source")


def test_importing_the_connector_sets_no_environment_variable():
    env = {k: v for k, v in os.environ.items() if k not in QUIET}
    code = ("import importlib, os, sys\n"
            "before = dict(os.environ)\n"
            f"for name in {MODULES!r}:\n"
            "    importlib.import_module(name)\n"
            "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))\n"
            "print(changed)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_the_cli_turns_mlflow_telemetry_off_for_its_own_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in QUIET}
    code = ("import os, sys\n"
            "from connector.cli import main\n"
            "sys.argv = ['mlflow-catalog', 'check', '-c', 'no-such-recipe.yml']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(os.environ.get('MLFLOW_DISABLE_TELEMETRY'), os.environ.get('DO_NOT_TRACK'))\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "true true"
