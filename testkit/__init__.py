"""Real servers for the tests and the benchmarks: a real `mlflow server` and a stand-in DataHub GMS.

Dev-only: not shipped in the wheel (pyproject's package find includes only `connector*`), and it
imports nothing from `tests`, so `benchmarks` need not import the test suite.
"""
