from __future__ import annotations

import pytest
import yaml

from hfssl.recipe import RecipeError, apply_overrides, load_recipe, recipe_from_dict

BASE = {"method": "simclr", "model": {"projection_dim": 16}, "train": {"max_steps": 5}}


def test_sections_are_typed_and_tuples_are_tuples():
    recipe = recipe_from_dict({**BASE, "views": {"crop_scale": [0.3, 1.0]}, "eval": {"protocols": ["knn"]}})
    assert recipe.views.crop_scale == (0.3, 1.0)
    assert recipe.eval.protocols == ("knn",)
    assert recipe.train.max_steps == 5


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({**BASE, "trian": {}}, "unknown recipe section 'trian'. Did you mean 'train'?"),
        ({**BASE, "train": {"max_stepz": 3}}, "unknown key train.max_stepz in recipe. Did you mean 'max_steps'?"),
        ({**BASE, "model": {"temprature": 0.2}}, "unknown key model.temprature for method 'simclr'"),
        ({"method": "simclr2"}, "unknown method 'simclr2'"),
        ({"model": {}}, "needs a 'method'"),
        ({**BASE, "train": {"batch_size": "big"}}, "train.batch_size must be an integer"),
        ({**BASE, "views": {"flip_prob": 1.5}}, "views.flip_prob must be a probability"),
        ({**BASE, "optim": {"name": "adam"}}, "optim.name must be one of adamw, lars, sgd"),
        ({**BASE, "data": {"on_bad_image": "ignore"}}, "data.on_bad_image must be 'error' or 'skip'"),
    ],
)
def test_bad_recipes_name_the_key_and_the_fix(raw, fragment):
    with pytest.raises(RecipeError) as error:
        recipe_from_dict(raw)
    assert fragment in str(error.value)


def test_overrides_are_yaml_values_and_reject_unknown_sections():
    raw = apply_overrides(BASE, ["train.max_steps=7", "views.crop_scale=[0.5, 1.0]", "model.temperature=0.3"])
    recipe = recipe_from_dict(raw)
    assert recipe.train.max_steps == 7 and recipe.views.crop_scale == (0.5, 1.0) and recipe.model["temperature"] == 0.3
    with pytest.raises(RecipeError, match="unknown section 'trainer'"):
        apply_overrides(BASE, ["trainer.max_steps=3"])
    with pytest.raises(RecipeError, match="must look like section.key=value"):
        apply_overrides(BASE, ["train.max_steps"])


def test_resolved_recipe_round_trips(tmp_path):
    recipe = recipe_from_dict({**BASE, "views": {"mean": [0.1, 0.2, 0.3]}})
    recipe.save(tmp_path / "recipe.yaml")
    again = load_recipe(tmp_path / "recipe.yaml")
    assert again == recipe
    assert yaml.safe_load((tmp_path / "recipe.yaml").read_text())["method"] == "simclr"


def test_missing_recipe_file_is_named(tmp_path):
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_every_shipped_recipe_parses(repo_root):
    recipes = sorted((repo_root / "recipes").glob("*/*.yaml"))
    recipes = [path for path in recipes if path.parent.name != "accelerate"]
    assert recipes, "no recipes found"
    for path in recipes:
        load_recipe(path)


def test_numbers_in_any_yaml_form_are_numbers(tmp_path):
    """YAML 1.1 reads 3e-4 as a string; recipes and overrides accept it (and 1e3 for an integer) as a number."""
    path = tmp_path / "recipe.yaml"
    path.write_text("method: simclr\noptim:\n  lr: 3e-4\n  warmup_ratio: 5e-2\ntrain:\n  max_steps: 1e3\n")
    recipe = load_recipe(path, ["views.crop_scale=[2e-1, 1]", "optim.weight_decay=1E-6", "train.seed=+7"])
    assert recipe.optim.lr == pytest.approx(3e-4) and isinstance(recipe.optim.lr, float)
    assert recipe.optim.warmup_ratio == pytest.approx(0.05)
    assert recipe.train.max_steps == 1000 and isinstance(recipe.train.max_steps, int)
    assert recipe.views.crop_scale == (0.2, 1.0) and recipe.optim.weight_decay == pytest.approx(1e-6)
    assert recipe.train.seed == 7
    with pytest.raises(RecipeError, match="train.max_steps must be an integer, got 2.5"):
        load_recipe(path, ["train.max_steps=2.5e0"])
