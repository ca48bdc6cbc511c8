"""A method defined inside tests/ (tests/toy_method.py) trains, resumes exactly, exports and evaluates through
the real engine, CLI and evaluation dispatcher, without any change to hfssl/.

It also pins the engine hooks down: the queue is training-only state (in every checkpoint, restored
exactly on resume, absent from the released model, the encoder and the card's parameter counts),
a freeze keeps the prediction head fixed for its first steps, scheduled scalars follow the step and
the recipe can override them.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel

import toy_method
from hfssl.cli import main as hfssl_main
from hfssl.hub.card import read_run
from hfssl.pipeline import check_training_recipe, run
from hfssl.registry import METHODS
from hfssl.schedules import Schedule
from hfssl.settings import RecipeError
from hfssl.training.checkpoint import TRAINING_STATE_FILE
from hfssl.training.trainer import _set_step_hyperparameters, resolved_schedules
from tiny import TINY

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def toy():
    spec = toy_method.register()
    yield spec
    toy_method.unregister()


toy_recipe = toy_method.toy_recipe


def test_a_method_from_tests_trains_resumes_exactly_with_its_queue(toy, tmp_path: Path) -> None:
    full = run(toy_recipe(), tmp_path / "full").output_dir
    last = full / "checkpoints" / "step-00000008"
    state = load_file(str(last / TRAINING_STATE_FILE.format(process=0)))
    assert set(state) == {"queue", "queue_pointer"}
    assert int(state["queue_pointer"]) == (8 * 16) % 24 and state["queue"].abs().sum() > 0
    released = load_file(str(full / "model.safetensors"))
    assert not any("queue" in key for key in released)  # training-only state stays out of the model
    assert not any("queue" in key for key in load_file(str(full / "encoder" / "model.safetensors")))

    resumed_dir = tmp_path / "resumed"
    shutil.copytree(full / "checkpoints" / "step-00000004", resumed_dir / "checkpoints" / "step-00000004")
    result = run(toy_recipe(), resumed_dir, resume=True)
    assert result.resumed_from.name == "step-00000004"
    resumed = load_file(str(resumed_dir / "model.safetensors"))
    assert released.keys() == resumed.keys()
    for name in released:
        assert torch.equal(released[name], resumed[name]), f"{name} differs after resume"
    resumed_state = load_file(str(resumed_dir / "checkpoints" / "step-00000008" / TRAINING_STATE_FILE.format(process=0)))
    assert torch.equal(state["queue"], resumed_state["queue"]) and torch.equal(state["queue_pointer"],
                                                                                resumed_state["queue_pointer"])


def test_a_checkpoint_without_the_training_state_is_refused(toy, tmp_path: Path) -> None:
    run(toy_recipe(max_steps=4), tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "step-00000004" / TRAINING_STATE_FILE.format(process=0)).unlink()
    with pytest.raises(ValueError, match="holds no training state \\['queue', 'queue_pointer'\\]"):
        run(toy_recipe(max_steps=6), tmp_path / "run", resume=True)


def test_the_toy_method_exports_evaluates_and_is_described_like_a_builtin(toy, tmp_path: Path) -> None:
    result = run(toy_recipe(), tmp_path / "run")
    out = result.output_dir
    assert isinstance(AutoModel.from_pretrained(out), toy_method.ToyQueueModel)  # the Auto classes know it
    end_of_run = json.loads((out / "eval_results.json").read_text())
    assert [(row["protocol"], row["k"]) for row in end_of_run["results"]] == [("knn", 5)]

    # hfssl eval on the run directory: the same dispatcher, the same features, the same numbers.
    assert hfssl_main(["eval", str(out), "--protocol", "knn", "--k", "5", "--no-baselines",
                       "--output", str(tmp_path / "again.json")]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["results"] == end_of_run["results"]

    # hfssl export elsewhere: a plain transformers encoder.
    assert hfssl_main(["export", str(out), "--output", str(tmp_path / "exported")]) == 0
    encoder = AutoModel.from_pretrained(tmp_path / "exported")
    assert type(encoder).__name__ == "ResNetModel" and (tmp_path / "exported" / "preprocessor_config.json").is_file()

    card = (out / "README.md").read_text()
    assert "Toy queue" in card and "A method that exists only in the tests" in card
    contents = read_run(out)
    assert contents.spec.name == toy_method.NAME


def test_a_freeze_holds_the_head_for_its_first_steps(toy, tmp_path: Path) -> None:
    out = run(toy_recipe(max_steps=5, checkpoint_every=1, keep_checkpoints=10), tmp_path / "run").output_dir

    def weights(step: int) -> dict[str, torch.Tensor]:
        return load_file(str(out / "checkpoints" / f"step-{step:08d}" / "model.safetensors"))

    first, third, fourth = weights(1), weights(3), weights(4)
    assert torch.equal(first["predictor.weight"], third["predictor.weight"])  # frozen for steps 1-3
    assert not torch.equal(third["predictor.weight"], fourth["predictor.weight"])  # updated from step 4
    assert not torch.equal(first["projector.weight"], third["projector.weight"])  # the rest trains throughout


def test_scheduled_scalars_follow_the_step_and_the_recipe_overrides_them(toy) -> None:
    model = toy_method.ToyQueueModel(toy_method.ToyQueueConfig(backbone_config=toy_method.TINY_BACKBONE))
    declared = resolved_schedules(model, toy_recipe())
    assert declared["temperature"](0, 10) == 0.5 and declared["temperature"](10, 10) == pytest.approx(0.1)
    overridden = resolved_schedules(model, toy_recipe(schedules={"temperature": {"start": 0.3, "kind": "constant"}}))
    assert overridden["temperature"] == Schedule(start=0.3, end=0.1, kind="constant")
    with pytest.raises(RecipeError, match="has no scheduled scalar 'temprature'. Did you mean 'temperature'"):
        check_training_recipe(toy_recipe(schedules={"temprature": 0.2}))
    # The scheduled weight decay reaches the decayed parameter groups only.
    optimizer = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.ones(2))], "weight_decay": 0.05, "decay": True},
                                   {"params": [torch.nn.Parameter(torch.ones(2))], "weight_decay": 0.0, "decay": False}],
                                  lr=1.0)
    _set_step_hyperparameters(optimizer, [1.0, 1.0], 0.5, {"weight_decay": 0.3})
    assert [(group["lr"], group["weight_decay"]) for group in optimizer.param_groups] == [(0.5, 0.3), (0.5, 0.0)]


def test_training_state_starts_from_its_reset_values_after_from_pretrained(toy, tmp_path: Path) -> None:
    """transformers leaves non-persistent buffers uninitialised on load; reset_training_state fills them."""
    model = toy_method.ToyQueueModel(toy_method.ToyQueueConfig(backbone_config=toy_method.TINY_BACKBONE))
    model.queue.fill_(3.0)
    model.queue_pointer.fill_(5)
    model.save_pretrained(tmp_path / "saved")
    loaded = AutoModel.from_pretrained(tmp_path / "saved")
    assert torch.equal(loaded.queue, torch.zeros_like(loaded.queue)) and int(loaded.queue_pointer) == 0


def test_the_toy_method_passes_the_shared_tests_of_every_method(toy, tmp_path: Path) -> None:
    """The toy's tiny config registers with the method (toy_method.register calls tests/tiny.py's register_tiny,
    as each tests/models/<method>/tiny_<method>.py does), so the registry-parametrized tests of
    tests/models/test_common.py run on it as on a built-in method; unregistering removes both."""
    spec = importlib.util.spec_from_file_location("_toy_shared_tests", TESTS / "models" / "test_common.py")
    shared = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shared)
    every_method, every_image_method = shared.TestEveryMethod(), shared.TestEveryImageMethod()
    every_method.test_loss_is_a_finite_scalar(toy_method.NAME)
    every_method.test_every_trainable_parameter_gets_a_gradient_and_teachers_none(toy_method.NAME)
    every_method.test_config_is_registered_and_prefixed(toy_method.NAME)
    every_method.test_save_and_auto_round_trip(toy_method.NAME, tmp_path)
    every_image_method.test_embeddings_shape(toy_method.NAME)
    toy_method.unregister()
    assert toy_method.NAME not in TINY and toy_method.NAME not in METHODS
