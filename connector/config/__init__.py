"""The recipe and what is made of it: the pydantic models of the recipe (recipe*.py), YAML and
`${VAR}` loading, the generated reference, the settings the run's parts are built from
(settings.py), and the checks run before a run (preflight.py, `mlflow-catalog check`: checks.py)."""
