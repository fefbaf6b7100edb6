"""The DAG factory's checks of a folder of recipes (no Airflow needed): recipes whose URNs would
collide are refused, naming both and the fix; a recipe that cannot run incrementally is refused on
an incremental schedule."""
import json
import subprocess
import sys

import pytest

from connector.integrations.recipe_plan import plan_folder, schedule_refusal
from connector.config.recipe import parse_recipe


def recipe(tracking: str, instance=None, gms="http://gms:8080", env=None) -> dict:
    config = {"tracking_uri": tracking}
    if instance is not None:
        config["platform_instance"] = instance
    if env is not None:
        config["env"] = env
    sink = {"type": "datahub-rest", "config": {"server": gms}} if gms else {"type": "file",
                                                                             "config": {"filename": "o.json"}}
    return {"source": {"type": "mlflow", "config": config}, "sink": sink}


def refusals(tmp_path, recipes: dict) -> dict:
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    for name, data in recipes.items():
        (folder / name).write_text(json.dumps(data), encoding="utf-8")
    return {p.name: p.refusal for p in plan_folder(folder)}


def test_two_servers_into_one_catalog_without_distinct_instances_are_both_refused(tmp_path):
    found = refusals(tmp_path, {"east.yml": recipe("http://mlflow-east:5000"),
                                "west.yml": recipe("https://user:secret@mlflow-west.example.com/"),
                                "east-again.yml": recipe("http://MLFLOW-EAST:5000/")})  # the same server
    assert "east.yml and west.yml crawl different MLflow servers" in found["east"]
    assert "west.yml and east.yml" in found["west"] and "west.yml and east-again.yml" in found["west"]
    assert "east-again.yml and west.yml" in found["east-again"] and " and east.yml" not in found["east-again"]
    assert "platform_instance (none) and env PROD" in found["west"]
    assert "set a distinct source.config.platform_instance in each" in found["west"]
    assert "secret" not in json.dumps(found) and "https://mlflow-west.example.com:443" in found["west"]


@pytest.mark.parametrize("east,west", [
    (recipe("http://a:5000", "east"), recipe("http://b:5000", "west")),            # distinct instances
    (recipe("http://a:5000"), recipe("http://b:5000", env="DEV")),                 # distinct envs
    (recipe("http://a:5000"), recipe("http://b:5000", gms="http://other-gms:8080")),  # two catalogs
    (recipe("http://a:5000"), recipe("http://b:5000", gms=None)),                  # a file is not this GMS
    (recipe("http://a:5000"), recipe("${NOT_SET_HERE}")),                          # unknown at parse time
])
def test_recipes_that_cannot_collide_are_not_refused(tmp_path, monkeypatch, east, west):
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    assert refusals(tmp_path, {"east.yml": east, "west.yml": west}) == {"east": None, "west": None}


def test_loopback_written_three_ways_is_one_catalog_and_one_server(tmp_path):
    """`localhost`, `127.0.0.1` and `[::1]` name one machine: two MLflow servers into one GMS written
    two ways still collide, and one MLflow server written two ways is not two servers."""
    found = refusals(tmp_path, {"a.yml": recipe("http://127.0.0.1:5000", gms="http://localhost:8080"),
                                "b.yml": recipe("http://127.0.0.1:5001", gms="http://[::1]:8080/"),
                                "c.yml": recipe("http://localhost:5000", gms="http://127.0.0.1:8080")})
    assert "a.yml and b.yml crawl different MLflow servers" in found["a"]
    assert "c.yml and b.yml crawl different MLflow servers" in found["c"] and "a.yml" not in found["c"]
    assert "http://localhost:5001" in found["b"]


def test_loopback_written_as_a_fully_qualified_name_or_an_ipv4_mapped_address(tmp_path):
    """`localhost.` and `[::ffff:127.0.0.1]` are the same machine too: the collision into one GMS is
    seen, and one MLflow server so written is not two servers."""
    found = refusals(tmp_path, {"a.yml": recipe("http://localhost.:5000", gms="http://[::ffff:127.0.0.1]:8080"),
                                "b.yml": recipe("http://127.0.0.1:5001", gms="http://localhost:8080/"),
                                "c.yml": recipe("http://[::ffff:7f00:1]:5000", gms="http://LOCALHOST.:8080")})
    assert "a.yml and b.yml crawl different MLflow servers" in found["a"]
    assert "c.yml and b.yml crawl different MLflow servers" in found["c"] and "a.yml" not in found["c"]


def test_the_same_instance_on_two_servers_is_refused_and_env_vars_count(tmp_path, monkeypatch):
    monkeypatch.setenv("WEST_MLFLOW", "http://b:5000")
    found = refusals(tmp_path, {"east.yml": recipe("http://a:5000", "shared", env="dev"),
                                "west.yml": recipe("${WEST_MLFLOW}", "shared", env="DEV")})
    assert "platform_instance (shared) and env DEV" in found["east"] and found["west"]


def test_the_plan_command_exits_2_naming_the_refused_recipes(tmp_path):
    refusals(tmp_path, {"east.yml": recipe("http://a:5000"), "west.yml": recipe("http://b:5000")})
    proc = subprocess.run([sys.executable, "-m", "connector.integrations.recipe_plan", str(tmp_path / "recipes")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "error: recipes east.yml and west.yml crawl different MLflow servers" in proc.stderr


def test_an_incremental_schedule_needs_state_and_incremental(tmp_path):
    base = {**recipe("http://a:5000"), "pipeline_name": "east"}
    no_state = parse_recipe(base)
    assert schedule_refusal(no_state, "*/15 * * * *") == (
        "the recipe runs on the incremental schedule (*/15 * * * *) but has no state section, so every run would "
        "be a full crawl; set source.config.incremental: true with a state section (and pipeline_name), or give "
        "recipe_dags incremental_schedule=None to crawl in full on the full schedule only")
    not_incremental = parse_recipe({**base, "state": {"path": str(tmp_path / "s.json")}})
    assert "does not set source.config.incremental: true" in schedule_refusal(not_incremental, "*/15 * * * *")
    both = parse_recipe({**base, "state": {"path": str(tmp_path / "s.json")},
                         "source": {"type": "mlflow", "config": {"tracking_uri": "http://a:5000", "incremental": True}}})
    assert schedule_refusal(both, "*/15 * * * *") is None
