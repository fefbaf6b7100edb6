"""Moved to testkit.mlflow_server (shared with the benchmarks); re-exported for the tests."""
from testkit.mlflow_server import *  # noqa: F401,F403
from testkit.mlflow_server import QUIET_ENV, free_port, mlflow_server  # noqa: F401
