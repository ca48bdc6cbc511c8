"""MoCo v2: its loss against a naive loop, the queue (FIFO update, training-only state, exact resume
through the real engine), and a short digits run that does not collapse; beside them, what v2 and v3 share
or differ in (the losses' input checks, the teacher momentum). MoCo v3's own tests are in
tests/models/moco_v3/.

The two-process checks (gathered keys in the queue, shuffling BN, MoCo v3's global-batch loss and
gradients) are in tests/test_distributed.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import hfssl  # noqa: F401 - registers the methods
from hfssl.export import export_encoder
from hfssl.losses import InfoNCELoss, MoCoV3Loss
from hfssl.recipe import load_recipe
from collapse import assert_short_digits_run_does_not_collapse
from resume_check import resume_matches
from tiny import tiny_inputs, tiny_model

REPO = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------- losses against naive loops


def cosine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (u * v).sum() / (u.norm() * v.norm())


def naive_infonce(query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo eq. 1, one query at a time: positive over positive + the K queue negatives, mean over queries."""
    total = query.new_zeros(())
    for i in range(query.shape[0]):
        positive = torch.exp(cosine(query[i], key[i]) / temperature)
        negatives = sum(torch.exp(cosine(query[i], queue[j]) / temperature) for j in range(queue.shape[0]))
        total = total - torch.log(positive / (positive + negatives))
    return total / query.shape[0]


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
@pytest.mark.parametrize("batch_size,queue_size", [(1, 1), (3, 5), (4, 2)])
def test_infonce_matches_naive_loop_values_and_gradients(temperature, batch_size, queue_size):
    generator = torch.Generator().manual_seed(batch_size * 10 + queue_size)
    query = torch.randn(batch_size, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    key = torch.randn(batch_size, 6, generator=generator, dtype=torch.float64, requires_grad=True)
    queue = F.normalize(torch.randn(queue_size, 6, generator=generator, dtype=torch.float64), dim=1)
    loss = InfoNCELoss(temperature)(query, key, queue)
    expected = naive_infonce(query, key, queue, temperature)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    for grad, expected_grad in zip(torch.autograd.grad(loss, (query, key)),
                                   torch.autograd.grad(expected, (query, key))):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_infonce_closed_forms():
    # Query equal to its key and orthogonal to every queued key: l = -log(e^(1/t) / (e^(1/t) + K)).
    query = torch.eye(4, dtype=torch.float64)[:2]
    queue = torch.eye(4, dtype=torch.float64)[2:]
    loss = InfoNCELoss(0.5)(query, query.clone(), queue)
    torch.testing.assert_close(loss, torch.tensor(-math.log(math.e**2 / (math.e**2 + 2)), dtype=torch.float64))
    # The queue gets no gradient: it is a constant, like the official code's queue.clone().detach().
    queue = queue.clone().requires_grad_(True)
    InfoNCELoss(0.5)(query.clone().requires_grad_(True), query, queue).backward()
    assert queue.grad is None



def test_losses_reject_bad_inputs():
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(0.0)
    with pytest.raises(ValueError, match="temperature"):
        MoCoV3Loss(float("nan"))
    with pytest.raises(ValueError, match="queue"):
        InfoNCELoss()(torch.randn(2, 4), torch.randn(2, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="one shape"):
        MoCoV3Loss()(torch.randn(2, 4), torch.randn(2, 4), torch.randn(3, 4), torch.randn(2, 4))


# ---------------------------------------------------------------- the queue


def reference_enqueue(queue: torch.Tensor, pointer: int, keys: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The FIFO queue's definition, one key at a time: write at the pointer, move it on, wrap at K."""
    queue = queue.clone()
    for row in keys:
        queue[pointer] = row
        pointer = (pointer + 1) % queue.shape[0]
    return queue, pointer


def test_enqueue_is_fifo_with_wrap_around():
    model = tiny_model("moco", queue_size=10, projection_dim=3)
    queue, pointer = model.queue.clone(), 0
    generator = torch.Generator().manual_seed(0)
    for count in (4, 4, 4, 10, 1, 23, 3):  # wraps mid-batch, exactly K, more than K at once
        keys = torch.randn(count, 3, generator=generator)
        model.enqueue(keys)
        queue, pointer = reference_enqueue(queue, pointer, keys)
        assert torch.equal(model.queue, queue), count
        assert int(model.queue_pointer) == pointer, count


def test_keys_are_enqueued_after_the_step_not_during_the_forward():
    model = tiny_model("moco", queue_size=16).train()
    before = model.queue.clone()
    outputs = model(**tiny_inputs("moco", batch_size=4))
    # The loss of a step uses the queue as it was before the step.
    assert torch.equal(model.queue, before)
    torch.testing.assert_close(outputs.loss, InfoNCELoss(0.2)(model.projector(outputs.embeddings),
                                                               outputs.positive_keys, before))
    second = model(**tiny_inputs("moco", batch_size=4, seed=1))  # a second micro-batch of the same step
    model.on_train_step_end(1, {"teacher_momentum": 0.99})
    expected, _ = reference_enqueue(before, 0, torch.cat([outputs.positive_keys, second.positive_keys]))
    assert torch.equal(model.queue, expected) and int(model.queue_pointer) == 8
    torch.testing.assert_close(model.queue[:8].norm(dim=1), torch.ones(8))
    # Evaluation-mode passes leave the queue alone; training passes without the engine stay bounded.
    model.eval()
    model(**tiny_inputs("moco"))
    model.on_train_step_end(2, {"teacher_momentum": 0.99})
    assert torch.equal(model.queue, expected)
    model.train()
    for seed in range(10):
        model(**tiny_inputs("moco", batch_size=4, seed=seed))
    assert len(model._pending_keys) == 4  # 16 keys fill the queue of 16: older batches would be overwritten


def test_queue_is_training_state_only(tmp_path):
    model = tiny_model("moco", queue_size=32)
    model.enqueue(torch.randn(5, 16))
    state = model.training_state_dict()
    assert set(state) == {"queue", "queue_pointer"} and state["queue"].shape == (32, 16)
    assert int(state["queue_pointer"]) == 5
    model.save_pretrained(tmp_path / "full")
    saved = load_file(tmp_path / "full" / "model.safetensors")
    assert not any("queue" in name for name in saved)
    assert "queue" not in dict(model.named_parameters()) and "queue" not in model.state_dict()
    export_encoder(model, tmp_path / "encoder", image_size=16, mean=(0.5,) * 3, std=(0.25,) * 3, channels=3)
    exported = load_file(next((tmp_path / "encoder").glob("*.safetensors")))
    assert not any("queue" in name for name in exported)
    # from_pretrained leaves non-persistent buffers empty; the model refills the queue with unit rows.
    from transformers import AutoModel

    loaded = AutoModel.from_pretrained(tmp_path / "full")
    torch.testing.assert_close(loaded.queue.norm(dim=1), torch.ones(32))
    assert int(loaded.queue_pointer) == 0
    loaded.load_training_state_dict(state)
    assert torch.equal(loaded.queue, state["queue"]) and int(loaded.queue_pointer) == 5


def test_moco_keeps_the_momentum_constant_and_moco_v3_raises_it_to_one():
    moco = tiny_model("moco", teacher_momentum=0.999).schedules()["teacher_momentum"]
    assert moco(1, 100) == moco(100, 100) == 0.999
    v3 = tiny_model("moco_v3").schedules()["teacher_momentum"]
    assert v3(0, 100) == pytest.approx(0.99) and v3(100, 100) == pytest.approx(1.0)



def test_moco_recipe_refuses_sync_batchnorm_with_shuffled_batch_norm():
    from hfssl.settings import RecipeError

    with pytest.raises(RecipeError, match="sync_batchnorm"):
        load_recipe(REPO / "recipes" / "moco" / "digits.yaml", ["train.sync_batchnorm=true"])
    recipe = load_recipe(REPO / "recipes" / "moco" / "digits.yaml",
                         ["train.sync_batchnorm=true", "model.shuffle_batch_norm=false"])
    assert recipe.train.sync_batchnorm


# ---------------------------------------------------------------- exact resume through the engine

TINY_DIGITS_RESNET = "{model_type: resnet, num_channels: 1, layer_type: basic, embedding_size: 8, " \
                     "hidden_sizes: [8, 16], depths: [1, 1]}"
FAST = ["train.progress_bar=false", "train.trackers=[]", "train.knn_every=null", "eval.protocols=[]"]


def test_resume_from_a_checkpoint_equals_the_uninterrupted_run_queue_included(tmp_path):
    """6 steps of 32 images with a queue of 80 keys (it wraps mid-batch) and checkpoints every 3
    steps; resuming a fresh directory from step 3 ends with the same weights and the same queue."""
    overrides = [*FAST, f"model.backbone_config={TINY_DIGITS_RESNET}", "model.projection_hidden_dim=32",
                 "model.projection_dim=16", "model.queue_size=80", "train.batch_size=32", "train.max_steps=6",
                 "train.checkpoint_every=3", "train.log_every=1", "train.monitor_every=2"]
    recipe = load_recipe(REPO / "recipes" / "moco" / "digits.yaml", overrides)
    # Same weights and the same queue (and pointer) after resuming from step 3 as uninterrupted.
    full, middle_queue = resume_matches(recipe, tmp_path, ("queue", "queue_pointer"))
    assert int(middle_queue["queue_pointer"]) == (3 * 32) % 80
    assert int(full.model.queue_pointer) == (6 * 32) % 80
    final = load_file(tmp_path / "resumed" / "checkpoints" / "step-00000006" / "training_state_0.safetensors")
    assert torch.equal(final["queue"], full.model.queue)
    # Control: the queue moved between the two checkpoints, so the comparison above has teeth.
    assert not torch.equal(middle_queue["queue"], final["queue"])


# ---------------------------------------------------------------- a short digits run does not collapse

@pytest.mark.parametrize("method", ["moco"])
def test_short_digits_run_does_not_collapse(method, tmp_path):
    # MoCo v2: a queue of 4 batches, so that the queue holds real negatives after step 4.
    assert_short_digits_run_does_not_collapse(method, tmp_path, ["model.queue_size=256"] if method == "moco" else [])
