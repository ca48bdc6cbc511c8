"""The online linear probe (``train.online_linear``) and ``train.early_stop`` through the real engine.

Tiny SimCLR runs (a grey ResNet with batch norm) on 192 digits: the probe leaves the SSL training bit-identical,
a resumed run logs the probe values of the uninterrupted one, two processes keep identical probes whose step
equals one process's on the whole batch, a missed milestone stops the run cleanly with exit code 5, and what
cannot work is refused before the run folder is written.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hfssl.errors import EXIT_EARLY_STOP, EarlyStopped
from hfssl.evaluation.online import OnlineLinear
from hfssl.recipe import RecipeError, load_recipe
from hfssl.training.trainer import train

from online_linear_worker import SPLIT, bare_probe_steps, fixed_batch, probe_recipe
from torchrun import run_two_ranks

REPO = Path(__file__).resolve().parents[2]
PROBE_LOGS = ("online_linear/train_top1", "online_linear/train_loss", "online_linear/top1")


def _train_logging(recipe, output_dir: Path, caplog, **kwargs) -> tuple[object, dict[int, dict[str, float]]]:  # noqa: ANN001
    """Train with the probe and return the result and every step's probe values (the engine's debug log)."""
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="hfssl.training.trainer"):
        result = train(recipe, output_dir, callbacks=[OnlineLinear(recipe)], **kwargs)
    logged = {}
    for record in caplog.records:
        if record.name == "hfssl.training.trainer" and record.msg == "step %d: %s":
            step, logs = record.args
            logged[step] = {name: value for name, value in logs.items() if name.startswith("online_linear/")}
    return result, logged


def test_the_probe_learns_beside_the_ssl_training_and_leaves_it_bit_identical(tmp_path, caplog):
    with_probe, logged = _train_logging(probe_recipe(), tmp_path / "probe", caplog)
    without = train(probe_recipe(online_linear=None), tmp_path / "plain")
    expected, actual = load_file(tmp_path / "plain" / "model.safetensors"), load_file(tmp_path / "probe" / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:  # batch-norm statistics included: the probe's forward runs in eval mode
        assert torch.equal(expected[name], actual[name]), f"{name} differs with the probe on"
    assert with_probe.final_loss == without.final_loss
    # The global random streams the checkpoints keep are those of the run without the probe.
    states = [torch.load(tmp_path / run / "checkpoints" / "step-00000004" / "random_states_0.pkl", weights_only=False)
              for run in ("plain", "probe")]
    assert torch.equal(states[0]["torch_manual_seed"], states[1]["torch_manual_seed"])
    # Every step logs the training-batch values; the held-out score every eval_every = 2 steps.
    assert sorted(logged) == [1, 2, 3, 4]
    assert [sorted(logged[step]) == sorted(PROBE_LOGS) for step in (1, 2, 3, 4)] == [False, True, False, True]
    assert all(0.0 <= values["online_linear/train_top1"] <= 1.0 for values in logged.values())
    # Zero weights at the start: the first loss is that of a uniform prediction over the 10 digits.
    assert logged[1]["online_linear/train_loss"] == pytest.approx(torch.log(torch.tensor(10.0)).item(), rel=1e-5)
    # The probe is saved with every checkpoint, and only there (not in the model).
    probe = load_file(tmp_path / "probe" / "checkpoints" / "step-00000004" / "callback_state_0.safetensors")
    assert {"online_linear.weight", "online_linear.bias"} <= set(probe)
    assert any(name.startswith("online_linear.optimizer.") for name in probe)
    assert probe["online_linear.weight"].shape == (10, 32) and probe["online_linear.weight"].abs().sum() > 0
    assert not any("online_linear" in name for name in actual)
    assert not (tmp_path / "plain" / "checkpoints" / "step-00000004" / "callback_state_0.safetensors").exists()


def test_a_resumed_run_logs_the_probe_values_of_the_uninterrupted_one(tmp_path, caplog):
    recipe = probe_recipe(max_steps=6, checkpoint_every=3)
    full, full_logs = _train_logging(recipe, tmp_path / "full", caplog)
    resumed_dir = tmp_path / "resumed"
    (resumed_dir / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "full" / "checkpoints" / "step-00000003", resumed_dir / "checkpoints" / "step-00000003")
    resumed, resumed_logs = _train_logging(recipe, resumed_dir, caplog, resume=True)
    assert resumed.resumed_step == 3 and sorted(resumed_logs) == [4, 5, 6]
    assert resumed_logs == {step: full_logs[step] for step in (4, 5, 6)}  # exactly, held-out scores included
    assert "online_linear/top1" in resumed_logs[4]
    for name in ("model.safetensors", "checkpoints/step-00000006/callback_state_0.safetensors"):
        expected, actual = load_file(tmp_path / "full" / name), load_file(resumed_dir / name)
        assert expected.keys() == actual.keys()
        for key in expected:
            assert torch.equal(expected[key], actual[key]), f"{name}: {key} differs after resume"


def test_two_processes_keep_identical_probes_with_the_whole_batch_step(tmp_path):
    first, second = run_two_ranks("online_linear_worker", "train_and_step", tmp_path, "online_", timeout=600)
    assert first["processes"] == second["processes"] == 2
    # The engine's probe: every process saved the same weights and moments in every checkpoint.
    for step in ("step-00000002", "step-00000004"):
        states = [load_file(tmp_path / "run" / "checkpoints" / step / f"callback_state_{rank}.safetensors")
                  for rank in (0, 1)]
        assert states[0].keys() == states[1].keys() and "online_linear.weight" in states[0]
        for key in states[0]:
            assert torch.equal(states[0][key], states[1][key]), f"{step}: {key} differs between the processes"
    # The bare probe: the averaged step on SPLIT + the rest rows equals one process's on the whole batch.
    assert torch.equal(first["weight"], second["weight"]) and torch.equal(first["bias"], second["bias"])
    assert first["logs"] == second["logs"]
    features, labels = fixed_batch()
    assert 0 < SPLIT < len(labels)
    whole, logs = bare_probe_steps(features, labels)
    torch.testing.assert_close(first["weight"], whole.classifier.weight.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(first["bias"], whole.classifier.bias.detach(), rtol=1e-5, atol=1e-6)
    for shared, alone in zip(first["logs"], logs):
        assert shared.keys() == alone.keys() == {"train_loss", "train_top1"}
        assert shared["train_top1"] == alone["train_top1"]
        assert shared["train_loss"] == pytest.approx(alone["train_loss"], rel=1e-5)


def test_rows_without_labels_are_left_out_and_a_batch_of_none_makes_no_step():
    features, labels = fixed_batch()
    probe, logs = bare_probe_steps(features, labels)
    kept = labels >= 0
    clean, clean_logs = bare_probe_steps(features[kept], labels[kept])
    torch.testing.assert_close(probe.classifier.weight, clean.classifier.weight, rtol=1e-6, atol=1e-7)
    assert [entry == pytest.approx(clean_entry) for entry, clean_entry in zip(logs, clean_logs)] == [True, True]
    assert logs[1]["train_loss"] < logs[0]["train_loss"]  # the second step on the same rows: the probe learnt
    before = probe.classifier.weight.detach().clone()
    assert probe.step([features], [torch.full_like(labels, -1)]) == {}
    assert torch.equal(probe.classifier.weight, before)


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_a_missed_milestone_saves_a_checkpoint_and_exits_5_and_resume_trains_on(tmp_path):
    run = tmp_path / "run"
    args = ["recipes/simclr/digits.yaml", "train.max_steps=4", "train.batch_size=32", "data.max_train_samples=192",
            "train.checkpoint_every=100", "train.online_linear={eval_every: 2, max_samples: 64}", "train.log_every=1",
            "train.early_stop={metric: online_linear/top1, min: 0.99, step: 2}", "eval.protocols=[]",
            "train.knn_every=null", "train.progress_bar=false", "train.trackers=[]"]
    stopped = subprocess.run([sys.executable, "-m", "hfssl.cli", "train", args[0], "--output-dir", str(run), *args[1:]],
                             cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert stopped.returncode == EXIT_EARLY_STOP == 5, stopped.stderr[-3000:]
    message = stopped.stderr.strip().splitlines()[-1]
    assert message.startswith("hfssl train: error: stopped early at step 2 of 4: online_linear/top1 = ")
    for part in ("below the milestone min=0.99", "train.early_stop", str(run / "checkpoints" / "step-00000002"),
                 "--resume", "train.early_stop=null"):
        assert part in message, part
    assert "Traceback" not in stopped.stderr
    # The folder is a resumable run: the checkpoint of the milestone step, no final model, no lock left.
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000002"]
    assert (run / "checkpoints" / "step-00000002" / "callback_state_0.safetensors").is_file()
    assert not (run / "model.safetensors").exists() and not (run / ".hfssl.lock").exists()
    assert (run / ".hfssl-manifest.json").is_file() and (run / "recipe.yaml").is_file()

    resumed = train(load_recipe(REPO / args[0], args[1:]), run, resume=True,
                    callbacks=[OnlineLinear(load_recipe(REPO / args[0], args[1:]))])
    assert resumed.resumed_step == 2 and resumed.steps == 4 and (run / "model.safetensors").is_file()


def test_the_early_stop_error_names_the_metric_value_milestone_and_key(tmp_path):
    recipe = probe_recipe(max_steps=4, early_stop={"metric": "online_linear/train_loss", "max": 0.01, "step": 2})
    with pytest.raises(EarlyStopped) as stopped:
        train(recipe, tmp_path, callbacks=[OnlineLinear(recipe)])
    error = stopped.value
    assert error.step == 2 and error.metric == "online_linear/train_loss" and error.value > 0.01
    assert error.checkpoint == tmp_path / "checkpoints" / "step-00000002" and error.checkpoint.is_dir()
    assert f"online_linear/train_loss = {error.value:.6g}, above the milestone max=0.01" in str(error)
    # A milestone the run meets lets it finish.
    met = probe_recipe(max_steps=2, early_stop={"metric": "online_linear/train_loss", "max": 100.0, "step": 2})
    assert train(met, tmp_path / "met", callbacks=[OnlineLinear(met)]).steps == 2


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.online_linear=true"], "train.online_linear: the mlm model (text data) does not serve image-features"),
])
def test_text_methods_are_refused_when_the_recipe_loads(overrides, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_recipe(REPO / "recipes" / "mlm" / "lee.yaml", overrides)


@pytest.mark.parametrize(("early_stop", "message"), [
    ({"metric": "knn/top1_k20", "min": 0.5, "step": 2},
     "train.early_stop.metric='knn/top1_k20' is not logged by this run; it logs online_linear/top1, "
     "online_linear/train_loss, online_linear/train_top1, train/loss. Note: the online kNN logs knn/top1_k20 when "
     "train.knn_every is set"),
    ({"metric": "online_linear/top1", "min": 0.5, "step": 3},
     "train.early_stop.step=3 is not a step where online_linear/top1 is measured (every 2 steps): set it to a "
     "multiple of 2, for example 2 or 4"),
    ({"metric": "online_linear/top1", "step": 2}, "train.early_stop needs a milestone"),
    ({"metric": "online_linear/top1", "min": 0.5, "step": 2, "patience": 3},
     "unknown key train.early_stop.patience in recipe"),
])
def test_early_stop_settings_are_checked_when_the_recipe_loads(early_stop, message):
    with pytest.raises(RecipeError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        probe_recipe(early_stop=early_stop)


def test_unlabelled_data_and_a_milestone_after_the_run_are_refused_before_the_folder_is_written(tmp_path):
    unlabelled = load_recipe(REPO / "recipes" / "simclr" / "digits.yaml",
                             ["data.eval_split=null", "train.online_linear=true", "train.max_steps=2"])
    with pytest.raises(RecipeError, match="train.online_linear needs labelled data with a held-out split"):
        train(unlabelled, tmp_path / "unlabelled", callbacks=[OnlineLinear(unlabelled)])
    late = probe_recipe(max_steps=2, early_stop={"metric": "online_linear/top1", "min": 0.5, "step": 4})
    with pytest.raises(RecipeError, match=r"train.early_stop.step=4 lies after the run's last step \(2\)"):
        train(late, tmp_path / "late", callbacks=[OnlineLinear(late)])
    for folder in ("unlabelled", "late"):
        assert not (tmp_path / folder / "recipe.yaml").exists() and not (tmp_path / folder / "checkpoints").exists()
