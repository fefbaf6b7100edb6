import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.mlflow_server import QUIET_ENV, mlflow_server

os.environ.update(QUIET_ENV)
ADMIN, PASSWORD = "admin", "s3cret-admin-pw-1"
_SERVER_FIXTURES = {"seeded_server", "team_server", "auth_server", "proxy"}


def pytest_collection_modifyitems(items):
    """A test that uses a server fixture (directly or through another fixture) is a `server` test,
    whether or not its module says so; tests that start one themselves carry the marker by hand
    (the offline tier, `make test-fast`, fails a test that starts a server unmarked)."""
    for item in items:
        if _SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def seeded_server(tmp_path_factory):
    """A real MLflow server populated with tests/seeding.py; yields (url, Seeded, db path)."""
    from tests.seeding import seed

    root = tmp_path_factory.mktemp("mlflow-seeded")
    with mlflow_server(root) as url:
        seeded = seed(url)
        yield url, seeded, root / "mlflow.db"


@pytest.fixture(scope="session")
def team_server(tmp_path_factory):
    """A real MLflow server (artifacts proxied) seeded the way a team does it (tests/team_seeding.py)."""
    from tests.team_seeding import seed_team

    with mlflow_server(tmp_path_factory.mktemp("mlflow-team"), proxy_artifacts=True) as url:
        yield seed_team(url)


@pytest.fixture
def write_recipe(tmp_path):
    def write(text: str, name: str = "recipe.yml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path
    return write


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory):
    """A real MLflow server with its basic-auth app (admin ADMIN / PASSWORD) and one experiment."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    (root / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
        f"admin_username = {ADMIN}\nadmin_password = {PASSWORD}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(root / "auth.ini"), "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests"}
    with mlflow_server(root, app_name="basic-auth", env=env) as url:
        seed = subprocess.run([sys.executable, "-c", (
            "from mlflow import MlflowClient; "
            f"MlflowClient({url!r}).create_experiment('secured-exp')")],
            env={**os.environ, "MLFLOW_TRACKING_USERNAME": ADMIN,
                 "MLFLOW_TRACKING_PASSWORD": PASSWORD}, capture_output=True, text=True, timeout=120)
        assert seed.returncode == 0, seed.stderr
        yield url


@pytest.fixture
def proxy(seeded_server):
    """A fault-injecting proxy (tests/fault_proxy.py) in front of the seeded MLflow server."""
    from tests.fault_proxy import FaultProxy

    url, _, _ = seeded_server
    with FaultProxy(url) as p:
        yield p
