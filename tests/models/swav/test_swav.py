"""SwAV: its codes (Sinkhorn-Knopp) and swapped-prediction loss, unit prototypes, its queue (training-only
state, filled from its start step), config checks, exact resume through the real engine, and a short digits
run that does not collapse.

The two-process checks (codes, loss and gradients against one process on the concatenated batch) are in
tests/models/test_multicrop_distributed.py, with DINO's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import hfssl  # noqa: F401 - registers the methods
from hfssl.losses import SwAVLoss, sinkhorn_knopp
from hfssl.recipe import load_recipe
from collapse import assert_short_digits_run_does_not_collapse
from resume_check import resume_matches
from tiny import TINY_RESNET, tiny_inputs, tiny_model

REPO = Path(__file__).resolve().parents[3]
FAST = ["train.progress_bar=false", "train.trackers=[]", "train.knn_every=null", "eval.protocols=[]"]
TINY_DIGITS_RESNET = "{model_type: resnet, num_channels: 1, layer_type: basic, embedding_size: 8, " \
                     "hidden_sizes: [8, 16], depths: [1, 1]}"


def test_swav_prototypes_stay_unit_vectors():
    model = tiny_model("swav")
    torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(20))
    with torch.no_grad():
        model.prototypes.weight.mul_(3.0)
    model.on_train_step_end(1, {})
    torch.testing.assert_close(model.prototypes.weight.norm(dim=1), torch.ones(20))
    (freeze,) = model.parameter_freezes()
    assert [name for name, _ in model.named_parameters() if freeze.matches(name)] == ["prototypes.weight"]


def test_swav_codes_and_loss_are_sinkhorn_and_swapped_prediction():
    model = tiny_model("swav", queue_size=0).train()
    outputs = model(**tiny_inputs("swav", batch_size=6))
    assert outputs.scores.shape == (4, 6, 20) and outputs.codes.shape == (2, 6, 20)
    for crop in range(2):
        torch.testing.assert_close(outputs.codes[crop], sinkhorn_knopp(outputs.scores[crop].detach(), 0.05, 3))
    torch.testing.assert_close(outputs.loss, SwAVLoss(0.1)(outputs.scores, outputs.codes))
    assert outputs.scores.abs().max() <= 1 + 1e-5  # cosines: unit features against unit prototypes


def test_swav_queue_fills_after_its_start_step_and_joins_the_codes_once_full():
    model = tiny_model("swav", queue_size=8, queue_start_step=2).train()
    first = model(**tiny_inputs("swav", batch_size=4, seed=0))
    model.on_train_step_end(1, {})  # before queue_start_step: nothing enters
    assert int(model.queue_count) == 0 and not model.queue_is_full
    pushed = []
    for step, seed in ((2, 1), (3, 2)):
        inputs = tiny_inputs("swav", batch_size=4, seed=seed)
        outputs = model(**inputs)
        # Not full yet: the codes are the batch's own Sinkhorn codes.
        torch.testing.assert_close(outputs.codes[0], sinkhorn_knopp(outputs.scores[0].detach()))
        with torch.no_grad():  # the forward's projections, recomputed: one pass per crop size, one projector batch
            global_crops = inputs["pixel_values"].transpose(0, 1).reshape(8, 3, 16, 16)
            local_crops = inputs["local_pixel_values"].transpose(0, 1).reshape(8, 3, 8, 8)
            features = torch.cat([model.get_embeddings(global_crops), model.get_embeddings(local_crops)])
            projections = F.normalize(model.projector(features), dim=1)
        torch.testing.assert_close(projections @ model.prototypes.weight.t(), outputs.scores.reshape(16, 20))
        pushed.append(projections[:8].view(2, 4, -1))
        model.on_train_step_end(step, {})
    assert model.queue_is_full and int(model.queue_count) == 8
    # Newest first, per assigned crop.
    torch.testing.assert_close(model.queue, torch.cat([pushed[1], pushed[0]], dim=1), rtol=1e-5, atol=1e-6)
    queue = model.queue.clone()
    outputs = model(**tiny_inputs("swav", batch_size=4, seed=3))
    for crop in range(2):
        problem = torch.cat([queue[crop] @ model.prototypes.weight.t(), outputs.scores[crop].detach()])
        expected = sinkhorn_knopp(problem)[-4:]
        torch.testing.assert_close(outputs.codes[crop], expected)
        assert not torch.allclose(outputs.codes[crop], sinkhorn_knopp(outputs.scores[crop].detach()))
    # Evaluation passes neither use nor change the queue.
    model.eval()
    outputs = model(**tiny_inputs("swav", batch_size=4, seed=3))
    torch.testing.assert_close(outputs.codes[0], sinkhorn_knopp(outputs.scores[0].detach()))
    del first


def test_swav_queue_is_training_state_only(tmp_path):
    model = tiny_model("swav", queue_size=8)
    model.enqueue(torch.randn(2, 3, 16))
    state = model.training_state_dict()
    assert set(state) == {"queue", "queue_count"} and int(state["queue_count"]) == 3
    model.save_pretrained(tmp_path)
    assert not any("queue" in name for name in load_file(tmp_path / "model.safetensors"))
    from transformers import AutoModel

    loaded = AutoModel.from_pretrained(tmp_path)
    assert int(loaded.queue_count) == 0 and torch.equal(loaded.queue, torch.zeros(2, 8, 16))
    loaded.load_training_state_dict(state)
    assert torch.equal(loaded.queue, state["queue"])


def test_swav_config_rejects_bad_values():
    from hfssl.models.swav import SwAVConfig

    with pytest.raises(ValueError, match="sinkhorn_epsilon"):
        SwAVConfig(backbone_config=TINY_RESNET, sinkhorn_epsilon=0.0)
    with pytest.raises(ValueError, match="queue_size"):
        SwAVConfig(backbone_config=TINY_RESNET, queue_size=-1)


# ---------------------------------------------------------------- exact resume through the engine


def test_swav_resume_is_bit_exact_with_the_queue(tmp_path):
    """6 steps of 32 digits with a queue of 48 rows filled from step 2 (full from step 3 on)."""
    overrides = [*FAST, f"model.backbone_config={TINY_DIGITS_RESNET}", "model.projection_hidden_dim=32",
                 "model.projection_dim=16", "model.num_prototypes=20", "model.queue_size=48",
                 "model.queue_start_step=2", "model.freeze_prototypes_epochs=0.05", "train.batch_size=32",
                 "train.max_steps=6", "train.checkpoint_every=3", "train.log_every=1", "train.monitor_every=2"]
    recipe = load_recipe(REPO / "recipes" / "swav" / "digits.yaml", overrides)
    full, middle = resume_matches(recipe, tmp_path, ("queue", "queue_count"))
    assert int(middle["queue_count"]) == 48 and int(full.model.queue_count) == 48
    assert not torch.equal(middle["queue"], full.model.queue)


#: The digits recipe freezes the prototypes for one epoch (22 steps here), longer than the 12-step run, which
#: is refused: half an epoch keeps the run as it was (the frozen part trains in the last step only).
SHORT_FREEZE = {"swav": ["model.freeze_prototypes_epochs=0.5"]}


# ---------------------------------------------------------------- a short digits run does not collapse


@pytest.mark.parametrize("method", ["swav"])
def test_short_digits_run_does_not_collapse(method, tmp_path):
    assert_short_digits_run_does_not_collapse(method, tmp_path, SHORT_FREEZE[method])
