from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hfssl.recipe import RecipeError, apply_overrides, load_recipe, recipe_from_dict

REPO_RECIPES = Path(__file__).resolve().parents[2] / "recipes"
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


def test_scientific_notation_is_a_float_in_every_section_and_in_nested_values(tmp_path):
    """The recipe reader resolves YAML 1.2 floats: the ``model`` section (a config's keyword arguments,
    which no section class converts) and values nested in it get numbers, not strings."""
    from hfssl.settings import load_yaml

    assert load_yaml("[2e-1, 1e-3, 1.0e+30, -3E-4, .5e1, 1e30, 12, '1e-3', 2e, e5]") == [
        0.2, 0.001, 1e30, -3e-4, 5.0, 1e30, 12, "1e-3", "2e", "e5"]
    path = tmp_path / "recipe.yaml"
    path.write_text("method: moco\nmodel:\n  temperature: 2e-1\n  backbone_config: {model_type: resnet, "
                    "layer_norm_eps: 1e-5}\n")
    recipe = load_recipe(path, ["model.teacher_momentum=9.9e-1"])
    assert recipe.model["temperature"] == 0.2 and recipe.model["teacher_momentum"] == 0.99
    assert recipe.model["backbone_config"]["layer_norm_eps"] == 1e-5
    w2v = load_recipe(REPO_RECIPES / "word2vec" / "lee.yaml", ["model.sample=1e-3"])
    assert w2v.model["sample"] == 0.001


@pytest.mark.parametrize("value, fragment", [
    ("2.5", "model.queue_size must be an integer, got 2.5"),
    ("true", "model.queue_size must be an integer, got True"),
    ("[1024]", "model.queue_size must be an integer, got [1024]"),
    ("many", "model.queue_size must be an integer, got 'many'"),
])
def test_model_values_are_checked_against_the_config_annotations(value, fragment):
    with pytest.raises(RecipeError) as error:
        recipe_from_dict(apply_overrides({"method": "moco"}, [f"model.queue_size={value}"]))
    assert fragment in str(error.value)
    assert recipe_from_dict(apply_overrides({"method": "moco"}, ["model.queue_size=4.096e3"])).model["queue_size"] == 4096


def test_a_recipe_that_is_not_a_mapping_is_refused_with_or_without_overrides(tmp_path):
    path = tmp_path / "string.yaml"
    path.write_text('"hello"\n')
    for overrides in ([], ["train.max_steps=2"]):
        with pytest.raises(RecipeError, match="must be a YAML mapping with sections method, model"):
            load_recipe(path, overrides)
