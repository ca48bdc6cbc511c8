"""DINO and SwAV on two real processes (gloo, CPU, float64) equal one process on the concatenated batch:
the Sinkhorn codes (sums over every process), DINO's centre (all-reduced teacher mean), the losses
and the DDP-averaged gradients, SwAV with and without a queue. One ``torchrun --nproc_per_node 2`` run
of tests/multicrop_worker.py (module fixture) produces every rank's results."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

import multicrop_worker as worker
from torchrun import run_two_ranks
from hfssl.distributed import convert_sync_batchnorm
from hfssl.losses import sinkhorn_knopp

EVEN_SPLIT = [3, 3]
UNEVEN_SPLIT = [2, 5]


def make_inputs() -> dict[str, Any]:
    generator = torch.Generator().manual_seed(2024)
    torch.manual_seed(0)
    dino = worker.build_dino()
    swav = worker.build_swav()
    total = sum(EVEN_SPLIT)
    return {
        "even_split": EVEN_SPLIT,
        "uneven_split": UNEVEN_SPLIT,
        "dino_state": dino.state_dict(),
        "dino_center": torch.randn(12, generator=generator, dtype=torch.float64),
        "swav_state": swav.state_dict(),
        "swav_queue": F.normalize(torch.randn(2, 8, 8, generator=generator, dtype=torch.float64), dim=-1),
        "multicrop_pixels": torch.randn(total, 2, 3, 16, 16, generator=generator, dtype=torch.float64),
        "multicrop_local_pixels": torch.randn(total, 3, 3, 8, 8, generator=generator, dtype=torch.float64),
        "sinkhorn_scores": torch.rand(sum(UNEVEN_SPLIT), 5, generator=generator, dtype=torch.float64) * 2 - 1,
    }


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out_dir = tmp_path_factory.mktemp("multicrop_two_ranks")
    inputs = make_inputs()
    torch.save(inputs, out_dir / "inputs.pt")
    results = run_two_ranks("multicrop_worker", "main", out_dir, "multicrop_")
    return inputs, results


def _assert_gradients_equal(expected: torch.nn.Module, results: list[dict[str, Any]], key: str) -> None:
    reference = {name: p.grad for name, p in expected.named_parameters() if p.grad is not None}
    for result in results:
        assert result[key]["grads"].keys() == reference.keys()
        for name, grad in reference.items():
            torch.testing.assert_close(result[key]["grads"][name], grad, rtol=1e-9, atol=1e-12, msg=name)


def test_sinkhorn_codes_of_two_ranks_with_unequal_rows_equal_one_process(two_ranks):
    inputs, results = two_ranks
    expected = sinkhorn_knopp(inputs["sinkhorn_scores"], 0.05, 3)
    got = torch.cat([result["sinkhorn"]["codes"] for result in results])
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    # Control: each rank's rows alone give other codes (local sums would be a real difference).
    alone = sinkhorn_knopp(inputs["sinkhorn_scores"][: UNEVEN_SPLIT[0]], 0.05, 3)
    assert not torch.allclose(alone, expected[: UNEVEN_SPLIT[0]], atol=1e-3)


def test_dino_centre_loss_and_gradients_of_two_ranks_equal_one_process(two_ranks):
    inputs, results = two_ranks
    model = worker.build_dino()
    model.load_state_dict(inputs["dino_state"])
    model.center.copy_(inputs["dino_center"])
    model.train()
    model.on_train_step_start(1, {"teacher_temperature": 0.05})
    output = model(pixel_values=inputs["multicrop_pixels"], local_pixel_values=inputs["multicrop_local_pixels"])
    output.loss.backward()
    model.on_train_step_end(1, {"teacher_momentum": 0.99})
    for result in results:
        torch.testing.assert_close(result["dino"]["center"], model.center, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(result["dino"]["loss"], output.loss.detach(), rtol=1e-12, atol=1e-14)
    assert not torch.allclose(model.center, inputs["dino_center"])  # the centre moved
    _assert_gradients_equal(model, results, "dino")


@pytest.mark.parametrize("with_queue", [False, True])
def test_swav_codes_loss_and_gradients_of_two_ranks_equal_one_process(two_ranks, with_queue):
    inputs, results = two_ranks
    key = "swav_queue" if with_queue else "swav"
    queue = inputs["swav_queue"]
    model = worker.build_swav(queue_size=queue.shape[1] if with_queue else 0)
    model.load_state_dict(inputs["swav_state"])
    if with_queue:  # one process holds both ranks' halves of the queue
        model.queue.copy_(queue)
        model.queue_count.fill_(queue.shape[1])
    model = convert_sync_batchnorm(model)  # a no-op in one process; same module types as the ranks
    model.train()
    output = model(pixel_values=inputs["multicrop_pixels"], local_pixel_values=inputs["multicrop_local_pixels"])
    output.loss.backward()
    codes = torch.cat([result[key]["codes"] for result in results], dim=1)
    torch.testing.assert_close(codes, output.codes, rtol=1e-10, atol=1e-13)
    for result in results:
        torch.testing.assert_close(result[key]["loss"], output.loss.detach(), rtol=1e-12, atol=1e-14)
    _assert_gradients_equal(model, results, key)
    if with_queue:  # control: the queue changed the codes
        assert not torch.allclose(results[0]["swav"]["codes"], results[0]["swav_queue"]["codes"], atol=1e-4)
