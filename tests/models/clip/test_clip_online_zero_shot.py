"""``train.zero_shot_every``: zero-shot top-1 during training (hfssl.evaluation.online.OnlineZeroShot) through the
real CLI on the tiny CLIP emoji recipe: logged at the right steps for the evaluation data and each extra source,
equal at the last step to the end-of-run evaluation, drawn in the card, read by `hfssl compare`, leaving the
trained weights as they are without it, and logging the same values after a resume."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file

from hfssl.compare import read_run_summary
from hfssl.recipe import load_recipe, monitored_metrics
from hfssl.settings import RecipeError
from test_clip_run import ARGS, REPO, _cli, _cli_in_process, write_tiny_recipe

ZERO_SHOT_TAGS = {"zero_shot/top1", "zero_shot/top1/builtin_emoji_twitter"}
ON = ["train.zero_shot_every=2", "train.trackers=[tensorboard]"]


def _scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from hfssl.plots import read_scalars

    return read_scalars(run / "logs", tags=(), prefixes=("zero_shot/",))


@pytest.fixture(scope="module")
def recipe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_recipe(tmp_path_factory.mktemp("recipe"))


@pytest.fixture(scope="module")
def runs(recipe_path: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 4-step run without and with the callback (every 2 steps): with it through the ``hfssl`` program,
    without it through the same CLI code in this process (one thread, as the program: the same weights)."""
    root = tmp_path_factory.mktemp("zero_shot_every")
    paths = {"off": root / "off", "on": root / "on"}
    for name, cli, extra in (("off", _cli_in_process, ["train.trackers=[tensorboard]", "eval.protocols=[]"]),
                             ("on", _cli, [*ON, "eval.protocols=[zero-shot]"])):  # the rows the tests read
        result = cli("train", str(recipe_path), "--output-dir", str(paths[name]), *ARGS, *extra)
        assert result.returncode == 0, result.stderr[-4000:]
    return paths


def _same_weights(expected_run: Path, actual_run: Path) -> None:
    expected = load_file(str(expected_run / "model.safetensors"))
    actual = load_file(str(actual_run / "model.safetensors"))
    assert expected.keys() == actual.keys()
    for name in expected:
        assert (expected[name] == actual[name]).all(), f"{name} differs"


def test_the_callback_does_not_change_training(runs: dict[str, Path]) -> None:
    _same_weights(runs["off"], runs["on"])


def test_zero_shot_is_logged_every_n_steps_and_ends_at_the_evaluations_value(runs: dict[str, Path]) -> None:
    scalars = _scalars(runs["on"])
    assert set(scalars) == ZERO_SHOT_TAGS
    assert all([step for step, _ in values] == [2, 4] for values in scalars.values())
    assert all(0.0 <= value <= 1.0 for values in scalars.values() for _, value in values)
    rows = [row for row in json.loads((runs["on"] / "eval_results.json").read_text())["results"]
            if row["protocol"] == "zero-shot"]
    final = {("zero_shot/top1" if row.get("dataset") is None else "zero_shot/top1/builtin_emoji_twitter"): row["top1"]
             for row in rows}
    assert {tag: values[-1][1] for tag, values in scalars.items()} == pytest.approx(final, abs=1e-6)
    assert not _scalars(runs["off"]) and list((runs["off"] / "logs").rglob("events.out.tfevents.*"))


def test_the_card_draws_the_curve_and_compare_reads_it(runs: dict[str, Path]) -> None:
    assert (runs["on"] / "images" / "zero_shot_curve.png").is_file()
    assert "images/zero_shot_curve.png" in (runs["on"] / "README.md").read_text()
    assert not (runs["off"] / "images" / "zero_shot_curve.png").exists()
    assert ZERO_SHOT_TAGS <= set(read_run_summary(runs["on"]).curves)


def test_a_resumed_run_logs_what_the_uninterrupted_run_did(runs: dict[str, Path], recipe_path: Path,
                                                           tmp_path: Path) -> None:
    run = tmp_path / "resumed"
    shutil.copytree(runs["on"], run)
    shutil.rmtree(run / "checkpoints" / "step-00000004")
    shutil.rmtree(run / "logs")
    (run / "model.safetensors").unlink()
    result = _cli_in_process("train", str(recipe_path), "--output-dir", str(run), "--resume", *ARGS, *ON,
                             "eval.protocols=[]")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resumed from" in result.stdout
    _same_weights(runs["on"], run)
    resumed, uninterrupted = _scalars(run), _scalars(runs["on"])
    assert set(resumed) == ZERO_SHOT_TAGS
    for tag, values in resumed.items():
        assert values == [uninterrupted[tag][-1]], tag  # step 4, the same value


def test_a_model_without_a_dual_encoder_is_refused_naming_the_key() -> None:
    with pytest.raises(RecipeError, match=r"train\.zero_shot_every=5: the simclr model does not serve "
                                          r"image-text-embeddings.*train\.zero_shot_every=null"):
        load_recipe(REPO / "recipes/simclr/digits.yaml", ["train.zero_shot_every=5"])
    with pytest.raises(RecipeError, match=r"train\.zero_shot_every must be >= 1"):
        load_recipe(REPO / "recipes/clip/emoji.yaml", ["train.zero_shot_every=0"])


def test_early_stop_may_watch_the_zero_shot_score() -> None:
    recipe = load_recipe(REPO / "recipes/clip/emoji.yaml",
                         ["train.zero_shot_every=50", "train.early_stop={metric: zero_shot/top1, step: 100, min: 0.2}"])
    assert monitored_metrics(recipe.train)["zero_shot/top1"] == 50
    with pytest.raises(RecipeError, match="not a step where zero_shot/top1 is measured"):
        load_recipe(REPO / "recipes/clip/emoji.yaml",
                    ["train.zero_shot_every=50", "train.early_stop={metric: zero_shot/top1, step: 70, min: 0.2}"])
