"""Distributed maths on two real gloo processes: two ranks on half batches == one process on the whole.

One ``torchrun --standalone --nproc_per_node 2 tests/distributed_worker.py`` run (module fixture)
computes everything on two CPU ranks; each test compares one part of it with the single-process
computation done here. All in float64, so the tolerances are tight.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

import distributed_worker as worker
from torchrun import run_two_ranks
from hfssl.distributed import (
    PortableSyncBatchNorm,
    all_reduce_mean,
    convert_sync_batchnorm,
    gather_no_grad,
    gather_sizes,
    gather_with_grad,
    is_distributed,
    rank,
    world_size,
)
from hfssl.losses import NTXentLoss

TIGHT = {"rtol": 1e-9, "atol": 1e-11}
EVEN_SPLIT = [4, 4]
UNEVEN_SPLIT = [3, 5]


def make_inputs() -> dict[str, Any]:
    generator = torch.Generator().manual_seed(1234)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    torch.manual_seed(0)
    linear = worker.build_linear()
    simclr = worker.build_simclr()
    batch_norm_2d = nn.BatchNorm2d(3, momentum=0.1).double()
    batch_norm_1d = nn.BatchNorm1d(4, momentum=None).double()
    with torch.no_grad():  # non-trivial affine parameters
        for layer in (batch_norm_2d, batch_norm_1d):
            layer.weight.copy_(1 + 0.5 * randn(layer.num_features))
            layer.bias.copy_(randn(layer.num_features))
    total = sum(UNEVEN_SPLIT)
    return {
        "even_split": EVEN_SPLIT,
        "uneven_split": UNEVEN_SPLIT,
        "gather_features": torch.arange(total * 3, dtype=torch.float64).view(total, 3),
        "gather_weights": randn(2, total, 3),
        "linear_state": linear.state_dict(),
        "linear_x1": randn(8, 6),
        "linear_x2": randn(8, 6),
        "simclr_state": simclr.state_dict(),
        "simclr_pixels": randn(8, 2, 3, 16, 16),
        "bn2d_layer": batch_norm_2d,
        "bn2d_x0": 2 + 3 * randn(total, 3, 5, 5),
        "bn2d_x1": -1 + 0.5 * randn(total, 3, 5, 5),
        "bn2d_w0": randn(total, 3, 5, 5),
        "bn2d_w1": randn(total, 3, 5, 5),
        "bn1d_layer": batch_norm_1d,
        "bn1d_x0": 4 + 2 * randn(total, 4),
        "bn1d_x1": randn(total, 4),
        "bn1d_w0": randn(total, 4),
        "bn1d_w1": randn(total, 4),
    }


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out_dir = tmp_path_factory.mktemp("two_ranks")
    inputs = make_inputs()
    torch.save(inputs, out_dir / "inputs.pt")
    results = run_two_ranks("distributed_worker", "main", out_dir, "", timeout=120)
    return inputs, results


def rows(tensor: torch.Tensor, split: list[int], index: int) -> torch.Tensor:
    start = sum(split[:index])
    return tensor[start : start + split[index]]


# ---------------------------------------------------------------- gathers and reductions


def test_gathers_with_unequal_batches(two_ranks) -> None:
    inputs, results = two_ranks
    features, weights = inputs["gather_features"], inputs["gather_weights"]
    for index, result in enumerate(results):
        gathers = result["gathers"]
        assert gathers["sizes"] == UNEVEN_SPLIT
        torch.testing.assert_close(gathers["no_grad"], features, rtol=0, atol=0)
        torch.testing.assert_close(gathers["with_grad"], features, rtol=0, atol=0)
        # loss_r = sum(gathered * W_r) on every rank; d(sum_r loss_r)/d(rank rows) = rows of (W_0 + W_1).
        expected = rows(weights[0] + weights[1], UNEVEN_SPLIT, index)
        torch.testing.assert_close(gathers["with_grad_input_grad"], expected, **TIGHT)


def test_all_reduce_mean(two_ranks) -> None:
    _, results = two_ranks
    for result in results:
        gathers = result["gathers"]
        torch.testing.assert_close(gathers["mean"], torch.tensor([1.5, 3.0, 4.5], dtype=torch.float64))
        torch.testing.assert_close(gathers["int_mean"], torch.tensor([1.5, 15.0], dtype=torch.float64))
        assert gathers["mean_input_unchanged"]


def test_helpers_are_identities_in_one_process() -> None:
    assert not is_distributed() and world_size() == 1 and rank() == 0
    tensor = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(tensor) is tensor
    assert torch.equal(gather_no_grad(tensor), tensor)
    assert all_reduce_mean(tensor) is tensor
    assert gather_sizes(3) == [3]


# ---------------------------------------------------------------- NT-Xent with gathered negatives


def one_process_linear(inputs: dict[str, Any]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model = worker.build_linear()
    model.load_state_dict(inputs["linear_state"])
    criterion = NTXentLoss(worker.TEMPERATURE, gather_distributed=True)
    loss = criterion(model(inputs["linear_x1"]), model(inputs["linear_x2"]))
    loss.backward()
    return loss.detach(), {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("case", ["ntxent_even", "ntxent_uneven"])
def test_ntxent_two_ranks_equal_one_process(two_ranks, case: str) -> None:
    inputs, results = two_ranks
    reference_loss, reference_grads = one_process_linear(inputs)
    # The rank-mean loss (what Accelerate logs) is the global-batch loss ...
    mean_loss = (results[0][case]["loss"] + results[1][case]["loss"]) / 2
    torch.testing.assert_close(mean_loss, reference_loss, **TIGHT)
    # ... and the DDP-averaged gradients (identical on both ranks) are its gradients.
    for result in results:
        assert result[case]["grads"].keys() == reference_grads.keys()
        for name, grad in reference_grads.items():
            torch.testing.assert_close(result[case]["grads"][name], grad, **TIGHT)
    # Control: without gathering, each rank has fewer negatives and the loss is different.
    local_mean = (results[0][case]["local_only_loss"] + results[1][case]["local_only_loss"]) / 2
    assert abs(float(local_mean - reference_loss)) > 1e-3


# ---------------------------------------------------------------- SimCLR + SyncBatchNorm + DDP


def test_simclr_ddp_with_sync_batch_norm_equals_one_process(two_ranks) -> None:
    inputs, results = two_ranks
    model = worker.build_simclr()
    model.load_state_dict(inputs["simclr_state"])
    model.train()
    output = model(pixel_values=inputs["simclr_pixels"])
    output.loss.backward()
    reference_grads = {name: p.grad for name, p in model.named_parameters()}
    reference_buffers = dict(model.named_buffers())

    mean_loss = (results[0]["simclr"]["loss"] + results[1]["simclr"]["loss"]) / 2
    torch.testing.assert_close(mean_loss, output.loss.detach(), **TIGHT)
    for index, result in enumerate(results):
        simclr = result["simclr"]
        assert simclr["batch_norm_types"] == ["hfssl.distributed.PortableSyncBatchNorm"]
        torch.testing.assert_close(simclr["projections"], rows(output.projections.detach(), EVEN_SPLIT, index),
                                   **TIGHT)
        assert simclr["grads"].keys() == reference_grads.keys()
        for name, grad in reference_grads.items():
            torch.testing.assert_close(simclr["grads"][name], grad, rtol=1e-8, atol=1e-10, msg=name)
        assert simclr["buffers"].keys() == reference_buffers.keys()
        for name, buffer in reference_buffers.items():
            torch.testing.assert_close(simclr["buffers"][name], buffer, **TIGHT, msg=name)
    # Control: per-rank BatchNorm statistics change the loss.
    local_mean = (results[0]["simclr"]["local_batch_norm_loss"] + results[1]["simclr"]["local_batch_norm_loss"]) / 2
    assert abs(float(local_mean - output.loss.detach())) > 1e-4


# ---------------------------------------------------------------- SyncBatchNorm layers


@pytest.mark.parametrize("name", ["bn2d", "bn1d"])
def test_sync_batch_norm_unequal_batches_equal_one_process(two_ranks, name: str) -> None:
    inputs, results = two_ranks
    layer = copy.deepcopy(inputs[f"{name}_layer"]).train()
    for step in range(2):
        x = inputs[f"{name}_x{step}"].clone().requires_grad_(True)
        layer.zero_grad()
        output = layer(x)
        (output * inputs[f"{name}_w{step}"]).sum().backward()
        for index, result in enumerate(results):
            got = result["sync_batch_norm"][name]["steps"][step]
            torch.testing.assert_close(got["output"], rows(output.detach(), UNEVEN_SPLIT, index), **TIGHT)
            torch.testing.assert_close(got["input_grad"], rows(x.grad, UNEVEN_SPLIT, index), **TIGHT)
            for parameter_name, parameter in layer.named_parameters():
                torch.testing.assert_close(got["param_grads"][parameter_name], parameter.grad, **TIGHT)
            torch.testing.assert_close(got["running_mean"], layer.running_mean, **TIGHT)
            torch.testing.assert_close(got["running_var"], layer.running_var, **TIGHT)
            assert got["num_batches_tracked"] == int(layer.num_batches_tracked) == step + 1
    layer.eval()
    with torch.no_grad():
        eval_output = layer(inputs[f"{name}_x0"])
    for index, result in enumerate(results):
        assert result["sync_batch_norm"][name]["type"] == "PortableSyncBatchNorm"
        torch.testing.assert_close(result["sync_batch_norm"][name]["eval_output"],
                                   rows(eval_output, UNEVEN_SPLIT, index), **TIGHT)


def test_convert_sync_batchnorm_keeps_tensors_and_state_dict_keys() -> None:
    from transformers import ResNetConfig, ResNetModel

    from tiny import TINY_RESNET

    config_values = {key: value for key, value in TINY_RESNET.items() if key != "model_type"}
    torch.manual_seed(0)
    backbone = ResNetModel(ResNetConfig(**config_values))
    before = backbone.state_dict()
    parameters_before = {name: id(p) for name, p in backbone.named_parameters()}
    pixels = torch.randn(4, 3, 16, 16)
    expected = backbone(pixel_values=pixels).pooler_output  # training mode: batch statistics

    backbone.load_state_dict(before)
    converted = convert_sync_batchnorm(backbone)
    assert converted is backbone
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)) for m in converted.modules())
    assert sum(isinstance(m, PortableSyncBatchNorm) for m in converted.modules()) == 6
    assert {name: id(p) for name, p in converted.named_parameters()} == parameters_before
    assert converted.state_dict().keys() == before.keys()
    # One process: exactly torch.nn.BatchNorm.
    torch.testing.assert_close(converted(pixel_values=pixels).pooler_output, expected)
    # The converted weights load back into a plain transformers ResNet (what export writes).
    ResNetModel(ResNetConfig(**config_values)).load_state_dict(converted.state_dict(), strict=True)

    single = convert_sync_batchnorm(nn.BatchNorm1d(5, momentum=None, affine=False))
    assert isinstance(single, PortableSyncBatchNorm) and single.momentum is None and not single.affine


def test_convert_sync_batchnorm_uses_torch_sync_batch_norm_on_gpus() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.BatchNorm1d(4 * 14 * 14))
    converted = convert_sync_batchnorm(model, device="cuda")
    types = [type(m) for m in converted.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert types == [nn.SyncBatchNorm, nn.SyncBatchNorm]


# ---------------------------------------------------------------- MoCo v2 and v3
# A second torchrun runs distributed_worker.main_moco on inputs of its own.


def make_moco_inputs() -> dict[str, Any]:
    import torch.nn.functional as F

    generator = torch.Generator().manual_seed(4321)
    torch.manual_seed(1)
    base = make_inputs()
    moco = worker.build_moco()
    moco_v3 = worker.build_moco_v3()
    return {
        **{key: base[key] for key in ("even_split", "uneven_split", "linear_state", "linear_x1", "linear_x2",
                                      "simclr_pixels")},
        "moco_queue": F.normalize(torch.randn(5, 4, generator=generator, dtype=torch.float64), dim=1),
        "moco_state": moco.state_dict(),
        "moco_training_state": moco.training_state_dict(),
        "moco_pixels": [torch.randn(8, 2, 3, 16, 16, generator=generator, dtype=torch.float64) for _ in range(2)],
        "moco_v3_state": moco_v3.state_dict(),
    }


@pytest.fixture(scope="module")
def moco_two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out_dir = tmp_path_factory.mktemp("moco_two_ranks")
    inputs = make_moco_inputs()
    torch.save(inputs, out_dir / "inputs.pt")
    results = run_two_ranks("distributed_worker", "main_moco", out_dir, "moco_", timeout=180)
    return inputs, results


@pytest.mark.parametrize("split_name", ["even", "uneven"])
@pytest.mark.parametrize("loss_name", ["infonce", "moco_v3"])
def test_moco_losses_two_ranks_equal_one_process(moco_two_ranks, split_name: str, loss_name: str) -> None:
    from hfssl.losses import InfoNCELoss, MoCoV3Loss

    inputs, results = moco_two_ranks
    model = worker.build_linear()
    model.load_state_dict(inputs["linear_state"])
    x1, x2 = inputs["linear_x1"], inputs["linear_x2"]
    if loss_name == "infonce":
        reference = InfoNCELoss(worker.TEMPERATURE)(model(x1), model(x2), inputs["moco_queue"])
    else:
        reference = MoCoV3Loss(worker.TEMPERATURE)(model(x1), model(x2), model(x1.flip(1)), model(x2.flip(1)))
    reference.backward()
    case = [result[f"losses_{split_name}"][loss_name] for result in results]
    torch.testing.assert_close((case[0]["loss"] + case[1]["loss"]) / 2, reference.detach(), **TIGHT)
    for result in case:
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(result["grads"][name], parameter.grad, **TIGHT, msg=name)
    if loss_name == "moco_v3":  # control: without the gathered keys each rank has fewer negatives
        local_mean = (case[0]["local_only_loss"] + case[1]["local_only_loss"]) / 2
        assert abs(float(local_mean - reference.detach())) > 1e-3


def _moco_reference(inputs: dict[str, Any], shuffle_seed: int | None) -> list[dict[str, Any]]:
    """One process, the same two steps: the keys of each rank's half (BatchNorm over that half, as on
    its rank), or, with shuffling BN, of each half of rank 0's permutation of the whole batch, put back
    in order; both halves' keys enqueued in rank order."""
    model = worker.build_moco()
    model.load_state_dict(inputs["moco_state"])
    model.load_training_state_dict(inputs["moco_training_state"])
    model.train()
    steps = []
    with torch.no_grad():
        for step, pixels in enumerate(inputs["moco_pixels"]):
            key_views = pixels[:, 1]
            if shuffle_seed is None:
                keys = torch.cat([model._encode_keys(rows(key_views, EVEN_SPLIT, r)) for r in range(2)])
            else:
                permutation = torch.randperm(8, generator=torch.Generator().manual_seed(100 * (step + 1)))
                shuffled = key_views[permutation]
                keys = torch.empty(8, model.config.projection_dim, dtype=torch.float64)
                keys[permutation] = torch.cat([model._encode_keys(rows(shuffled, EVEN_SPLIT, r)) for r in range(2)])
            losses = []
            for r in range(2):
                queries = model.projector(model.get_embeddings(rows(pixels[:, 0], EVEN_SPLIT, r)))
                losses.append(model.criterion(queries, rows(keys, EVEN_SPLIT, r), model.queue))
            model.enqueue(keys)
            steps.append({"keys": keys, "losses": losses, "queue": model.queue.clone(),
                          "pointer": int(model.queue_pointer)})
    return steps


@pytest.mark.parametrize("case", ["queue", "queue_shuffled"])
def test_moco_queue_holds_the_keys_of_every_rank(moco_two_ranks, case: str) -> None:
    """Two ranks enqueue the keys gathered from both, in rank order: after each step both hold the
    queue that one process gets by enqueueing the whole batch's keys (a queue of 12 and 8 keys a
    step, so the second step wraps around)."""
    inputs, results = moco_two_ranks
    reference = _moco_reference(inputs, shuffle_seed=None if case == "queue" else 100)
    for step, expected in enumerate(reference):
        for index, result in enumerate(results):
            got = result[case]["steps"][step]
            torch.testing.assert_close(got["keys"], rows(expected["keys"], EVEN_SPLIT, index), **TIGHT)
            torch.testing.assert_close(got["loss"], expected["losses"][index], **TIGHT)
            torch.testing.assert_close(got["queue"], expected["queue"], **TIGHT)
            assert got["pointer"] == expected["pointer"] == (8 * (step + 1)) % 12
    assert torch.equal(results[0][case]["steps"][1]["queue"], results[1][case]["steps"][1]["queue"])


def test_moco_shuffled_batch_norm_changes_the_key_statistics(moco_two_ranks) -> None:
    """Shuffling BN (He et al. sec. 3.3): with it, the keys are normalised over other images than
    their queries (so they differ from the unshuffled keys); rank 0's permutation was used on both
    ranks although each drew its own (otherwise the reference above would not match)."""
    _, results = moco_two_ranks
    for result in results:
        plain, shuffled = result["queue"]["steps"][0]["keys"], result["queue_shuffled"]["steps"][0]["keys"]
        assert (plain - shuffled).abs().max() > 1e-4


def test_moco_v3_ddp_with_sync_batch_norm_equals_one_process(moco_two_ranks) -> None:
    """MoCo v3's BatchNorm handling (SyncBatchNorm, as ``train.sync_batchnorm`` sets it) plus gathered
    keys: two DDP ranks on half batches give the loss and gradients of one process on the whole batch."""
    inputs, results = moco_two_ranks
    model = worker.build_moco_v3()
    model.load_state_dict(inputs["moco_v3_state"])
    model.train()
    output = model(pixel_values=inputs["simclr_pixels"])
    output.loss.backward()
    torch.testing.assert_close((results[0]["moco_v3_ddp"]["loss"] + results[1]["moco_v3_ddp"]["loss"]) / 2,
                               output.loss.detach(), **TIGHT)
    reference = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert not any(name.startswith("teacher_") for name in reference)
    for result in results:
        assert result["moco_v3_ddp"]["grads"].keys() == reference.keys()
        for name, grad in reference.items():
            torch.testing.assert_close(result["moco_v3_ddp"]["grads"][name], grad, rtol=1e-8, atol=1e-10, msg=name)


# ---------------------------------------------------------------- VICReg and Barlow Twins: global-batch statistics


@pytest.mark.parametrize("case", ["vicreg_even", "vicreg_uneven", "barlow_twins_even", "barlow_twins_uneven"])
def test_redundancy_reduction_two_ranks_equal_one_process(two_ranks, case: str) -> None:
    """Variance, covariance (VICReg) and the cross-correlation (Barlow Twins) over the gathered
    global batch: the rank-mean of the loss and of every logged term (what Accelerate logs) is the
    one-process value on the whole batch, and the DDP-averaged gradients are its gradients, also on
    unequal local batches (VICReg's per-rank invariance term is scaled by W * B_r / N)."""
    inputs, results = two_ranks
    name = case.rsplit("_", 1)[0]
    model = worker.build_linear()
    model.load_state_dict(inputs["linear_state"])
    output = worker.build_redundancy_reduction_loss(name, gather_distributed=True)(
        model(inputs["linear_x1"]), model(inputs["linear_x2"]))
    output.loss.backward()
    reference_grads = {key: p.grad for key, p in model.named_parameters()}
    reference_terms = {key: value.detach() for key, value in output._asdict().items()}
    assert reference_terms["loss"] > 0
    for key, reference in reference_terms.items():
        mean = (results[0][case]["terms"][key] + results[1][case]["terms"][key]) / 2
        torch.testing.assert_close(mean, reference, **TIGHT, msg=f"{case} {key}")
    for result in results:
        assert result[case]["grads"].keys() == reference_grads.keys()
        for key, grad in reference_grads.items():
            torch.testing.assert_close(result[case]["grads"][key], grad, **TIGHT, msg=f"{case} {key}")
    # Control: statistics over each rank's own rows give a different loss.
    local_mean = (results[0][case]["local_only_loss"] + results[1][case]["local_only_loss"]) / 2
    assert abs(float(local_mean - reference_terms["loss"])) > 1e-3


# ---------------------------------------------------------------- CLIP: local rows against gathered columns


def make_clip_inputs() -> dict[str, Any]:
    generator = torch.Generator().manual_seed(11)
    torch.manual_seed(0)
    pair = worker.PairEncoder().double()
    clip = worker.build_tiny_clip()
    total = sum(UNEVEN_SPLIT)
    return {
        "even_split": EVEN_SPLIT,
        "uneven_split": UNEVEN_SPLIT,
        "pair_state": pair.state_dict(),
        "pair_images": torch.randn(total, 6, generator=generator, dtype=torch.float64),
        "pair_texts": torch.randn(total, 5, generator=generator, dtype=torch.float64),
        "clip_state": clip.state_dict(),
        "clip_pixels": torch.randn(total, 3, 16, 16, generator=generator, dtype=torch.float64),
        "clip_input_ids": torch.randint(1000, 30000, (total, 6), generator=generator),
        "clip_attention_mask": torch.tensor([[1] * 6] * 4 + [[1] * 4 + [0] * 2] * 4),
    }


@pytest.fixture(scope="module")
def clip_two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out_dir = tmp_path_factory.mktemp("clip_two_ranks")
    inputs = make_clip_inputs()
    torch.save(inputs, out_dir / "inputs.pt")
    results = run_two_ranks("distributed_worker", "main_clip", out_dir, "clip_", timeout=180)
    return inputs, results


@pytest.mark.parametrize("case", ["clip_even", "clip_uneven"])
def test_clip_loss_two_ranks_equal_one_process(clip_two_ranks, case: str) -> None:
    """Each rank scores its own image and text rows against the gathered columns: the rank-mean loss is
    the one-process loss of the concatenated batch, and the DDP-averaged gradients (towers and the
    learned scale) are its gradients, also with unequal local batches."""
    inputs, results = clip_two_ranks
    model = worker.PairEncoder().double()
    model.load_state_dict(inputs["pair_state"])
    reference = model(inputs["pair_images"], inputs["pair_texts"])
    reference.backward()
    torch.testing.assert_close((results[0][case]["loss"] + results[1][case]["loss"]) / 2, reference.detach(), **TIGHT)
    for result in results:
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(result[case]["grads"][name], parameter.grad, **TIGHT, msg=f"{case} {name}")
    local_mean = (results[0][case]["local_only_loss"] + results[1][case]["local_only_loss"]) / 2
    assert abs(float(local_mean - reference.detach())) > 1e-3  # control: fewer negatives, another loss


def test_clip_model_ddp_equals_one_process(clip_two_ranks) -> None:
    """The whole tiny CLIP (ViT + BERT towers, projections, scale) in DDP on two half batches."""
    inputs, results = clip_two_ranks
    model = worker.build_tiny_clip()
    model.load_state_dict(inputs["clip_state"])
    model.train()
    output = model(pixel_values=inputs["clip_pixels"], input_ids=inputs["clip_input_ids"],
                   attention_mask=inputs["clip_attention_mask"])
    output.loss.backward()
    torch.testing.assert_close((results[0]["clip_ddp"]["loss"] + results[1]["clip_ddp"]["loss"]) / 2,
                               output.loss.detach(), **TIGHT)
    reference = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert "backbone.logit_scale" in reference
    for result in results:
        assert result["clip_ddp"]["grads"].keys() == reference.keys()
        for name, grad in reference.items():
            torch.testing.assert_close(result["clip_ddp"]["grads"][name], grad, rtol=1e-8, atol=1e-10, msg=name)
