"""The recipe reference is written from the recipe's pydantic models: the checked-in copies must be
what the models say (`make reference` rewrites them), and the reference recipe must be a valid recipe."""
import yaml

from connector.config import recipe_reference
from connector.config.recipe import parse_recipe


def test_the_checked_in_reference_is_what_the_models_say():
    assert recipe_reference.MARKDOWN.read_text(encoding="utf-8") == recipe_reference.markdown(), \
        "docs/recipe-reference.md is out of date: run `make reference`"
    assert recipe_reference.YAML.read_text(encoding="utf-8") == recipe_reference.yaml_reference(), \
        "recipes/reference.yml is out of date: run `make reference`"


def test_every_key_is_described_and_the_reference_recipe_parses():
    undescribed = [key.path for _, prefix, model in recipe_reference.SECTIONS
                   for key in recipe_reference.keys(model, prefix) if not key.description]
    assert undescribed == []
    recipe = parse_recipe(yaml.safe_load(recipe_reference.YAML.read_text(encoding="utf-8")))
    assert recipe.source.config.tracking_uri == "http://mlflow.internal:5000"
    assert recipe.sink.type == "file" and recipe.state is not None and recipe.state.path == ".mlflow-catalog/state.json"
