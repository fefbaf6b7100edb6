import pytest

from connector.config.settings import crawl_settings
from connector.config.recipe import RecipeError, expand_env, load_recipe, parse_recipe
from tests.cli_in_process import run_cli

GOOD = {"source": {"type": "mlflow", "config": {"tracking_uri": "http://mlflow:5000"}},
        "sink": {"type": "file", "config": {"filename": "out.json"}}}


def test_defaults():
    recipe = parse_recipe(GOOD)
    config = recipe.source.config
    assert (config.env, config.model_name_separator, config.include_deleted) == ("PROD", "_", False)
    assert crawl_settings(config).models.allows("anything") and recipe.sink.config.filename == "out.json"


def test_unknown_key_names_its_path(write_recipe):
    path = write_recipe("""
source:
  type: mlflow
  config:
    tracking_uri: http://x
    model_patern: {allow: [".*"]}
sink: {type: file, config: {filename: out.json}}
""")
    proc = run_cli("ingest", "-c", str(path))
    assert proc.returncode == 2
    assert "source.config.model_patern" in proc.stderr and "Extra inputs" in proc.stderr


def test_wrong_type_names_its_path(write_recipe):
    path = write_recipe("""
source: {type: mlflow, config: {tracking_uri: http://x, include_runs: "sometimes"}}
sink: {type: file, config: {filename: out.json}}
""")
    proc = run_cli("check", "-c", str(path))
    assert proc.returncode == 2
    assert "source.config.include_runs" in proc.stderr


def test_missing_env_var_names_field_and_variable(write_recipe, tmp_path):
    path = write_recipe("""
source: {type: mlflow, config: {tracking_uri: "${NO_SUCH_MLFLOW_URI_VAR}"}}
sink: {type: file, config: {filename: out.json}}
""")
    proc = run_cli("ingest", "-c", str(path))
    assert proc.returncode == 2
    assert "source.config.tracking_uri" in proc.stderr and "NO_SUCH_MLFLOW_URI_VAR" in proc.stderr
    assert not (tmp_path / "out.json").exists()


def test_unknown_sink_type_and_bad_regex():
    with pytest.raises(RecipeError, match="sink"):
        parse_recipe({**GOOD, "sink": {"type": "kafka", "config": {}}})
    bad = {**GOOD, "source": {"type": "mlflow", "config": {"experiment_pattern": {"deny": ["(unclosed"]}}}}
    with pytest.raises(RecipeError, match=r"source\.config\.experiment_pattern\.deny"):
        parse_recipe(bad)


def test_env_expansion():
    env = {"HOST": "mlflow.internal", "PORT": "5000"}
    tree = {"a": "http://${HOST}:${PORT}", "b": ["${MISSING:-fallback}"], "c": "cost $$5", "d": 3}
    assert expand_env(tree, environ=env) == {
        "a": "http://mlflow.internal:5000", "b": ["fallback"], "c": "cost $5", "d": 3}


def test_secrets_stay_out_of_reprs(write_recipe, monkeypatch):
    monkeypatch.setenv("MLFLOW_PW_FOR_TEST", "hunter2-secret")
    path = write_recipe("""
source: {type: mlflow, config: {tracking_uri: http://x, username: bob, password: "${MLFLOW_PW_FOR_TEST}", token: tok-secret}}
sink: {type: file, config: {filename: out.json}}
""")
    recipe = load_recipe(path)
    text = repr(recipe) + str(recipe.model_dump()) + recipe.model_dump_json()
    assert "hunter2-secret" not in text and "tok-secret" not in text
    assert recipe.source.config.password.get_secret_value() == "hunter2-secret"


def test_unreadable_and_invalid_yaml(tmp_path, write_recipe):
    proc = run_cli("ingest", "-c", str(tmp_path / "nope.yml"))
    assert proc.returncode == 2 and "nope.yml" in proc.stderr
    proc = run_cli("ingest", "-c", str(write_recipe("source: [unclosed")))
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr
