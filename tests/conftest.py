import os
from pathlib import Path

import pytest

from tests.mlflow_server import QUIET_ENV, mlflow_server

os.environ.update(QUIET_ENV)


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
