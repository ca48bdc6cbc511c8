"""SigLIPLoss (Zhai et al. 2023) against the paper's formula written out pair by pair, closed-form values,
bad input, and two real gloo processes (tests/siglip_worker.py) against one process on the whole batch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

import siglip_worker as worker
from hfssl.losses import SigLIPLoss
from torchrun import run_two_ranks

TIGHT = {"rtol": 1e-9, "atol": 1e-11}


def naive_siglip_loss(images: torch.Tensor, texts: torch.Tensor, scale: torch.Tensor,
                      bias: torch.Tensor) -> torch.Tensor:
    """-(1/N) sum_ij log sigmoid(z_ij (t <x_i, y_j> + b)), z_ij = 1 if i == j else -1 (sec. 3.1)."""
    n = images.shape[0]
    x = [row / row.norm() for row in images]
    y = [row / row.norm() for row in texts]
    total = torch.zeros((), dtype=images.dtype)
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            total = total - torch.log(torch.sigmoid(z * (scale * torch.dot(x[i], y[j]) + bias)))
    return total / n


def test_matches_the_formula_with_gradients() -> None:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(7, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    texts = torch.randn(7, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    log_scale = torch.tensor(math.log(10.0), dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    loss = SigLIPLoss()(images, texts, log_scale.exp(), bias)
    expected = naive_siglip_loss(images, texts, log_scale.exp(), bias)
    torch.testing.assert_close(loss, expected)
    grads = torch.autograd.grad(loss, (images, texts, log_scale, bias))
    expected_grads = torch.autograd.grad(expected, (images, texts, log_scale, bias))
    for grad, reference in zip(grads, expected_grads):
        torch.testing.assert_close(grad, reference)


def test_closed_form_values() -> None:
    # Orthonormal pairs: logits s + b on the diagonal and b elsewhere:
    # softplus(-(s + b)) + (N - 1) softplus(b).
    n, scale, bias = 4, 10.0, -10.0
    eye = torch.eye(n, dtype=torch.float64)
    expected = math.log1p(math.exp(-(scale + bias))) + (n - 1) * math.log1p(math.exp(bias))
    value = SigLIPLoss()(eye, 3 * eye, torch.tensor(scale, dtype=torch.float64), torch.tensor(bias, dtype=torch.float64))
    assert value.item() == pytest.approx(expected, rel=1e-12)
    # One pair: log(1 + e^{-(s + b)}), no negatives at all.
    one = torch.ones(1, 3)
    assert SigLIPLoss()(one, one, torch.tensor(2.0), torch.tensor(0.5)).item() == pytest.approx(math.log1p(math.exp(-2.5)))


def test_the_bias_moves_the_loss_and_gets_a_gradient() -> None:
    generator = torch.Generator().manual_seed(2)
    images, texts = torch.randn(6, 4, generator=generator), torch.randn(6, 4, generator=generator)
    bias = torch.tensor(-10.0, requires_grad=True)
    loss = SigLIPLoss()(images, texts, torch.tensor(10.0), bias)
    (grad,) = torch.autograd.grad(loss, bias)
    # At b = -10 the negatives' sigmoid(b) ~ 0 and each positive's ~ 0: the loss pulls b up.
    assert grad.item() < -0.5


@pytest.mark.parametrize(("images", "texts"), [((3, 4), (2, 4)), ((3, 4), (3, 5)), ((0, 4), (0, 4)), ((3,), (3,))])
def test_bad_shapes_are_named(images: tuple, texts: tuple) -> None:
    with pytest.raises(ValueError, match="row i of both being a pair"):
        SigLIPLoss()(torch.zeros(images), torch.zeros(texts), torch.tensor(1.0), torch.tensor(0.0))


# ---------------------------------------------------------------- two processes = one process


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    out_dir: Path = tmp_path_factory.mktemp("siglip_two_ranks")
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(0)
    pair = worker.SigmoidPairEncoder().double()
    model = worker.build_tiny_siglip(chunk_size=None)
    inputs = {
        "even_split": [4, 4], "uneven_split": [3, 5],
        "pair_state": pair.state_dict(),
        "pair_images": torch.randn(8, 6, generator=generator, dtype=torch.float64),
        "pair_texts": torch.randn(8, 5, generator=generator, dtype=torch.float64),
        "model_state": model.state_dict(),
        "pixels": torch.randn(8, 3, 16, 16, generator=generator, dtype=torch.float64),
        "input_ids": torch.randint(1000, 30000, (8, 6), generator=generator),
        "attention_mask": torch.tensor([[1] * 6] * 5 + [[1] * 4 + [0] * 2] * 3),
    }
    torch.save(inputs, out_dir / "inputs.pt")
    return inputs, run_two_ranks("siglip_worker", "main", out_dir, "siglip_", timeout=180)


@pytest.mark.parametrize("case", ["even", "uneven"])
def test_two_ranks_equal_one_process(two_ranks, case: str) -> None:
    """Each rank scores its own images against the texts of both: the rank-mean loss is the one-process
    loss of the whole batch and the DDP-averaged gradients (towers, scale and bias) are its gradients,
    also with unequal local batches."""
    inputs, results = two_ranks
    model = worker.SigmoidPairEncoder().double()
    model.load_state_dict(inputs["pair_state"])
    reference = model(inputs["pair_images"], inputs["pair_texts"])
    reference.backward()
    with torch.no_grad():
        formula = naive_siglip_loss(model.image(inputs["pair_images"]), model.text(inputs["pair_texts"]),
                                    model.log_scale.exp(), model.bias)
    torch.testing.assert_close(reference.detach(), formula, **TIGHT)
    torch.testing.assert_close((results[0][case]["loss"] + results[1][case]["loss"]) / 2, reference.detach(), **TIGHT)
    for result in results:
        for name, parameter in model.named_parameters():
            torch.testing.assert_close(result[case]["grads"][name], parameter.grad, **TIGHT, msg=f"{case} {name}")
    local_mean = (results[0][case]["local_only_loss"] + results[1][case]["local_only_loss"]) / 2
    assert abs(float(local_mean - reference.detach())) > 1e-3  # control: fewer negatives, another loss


def test_the_siglip_model_with_the_gradient_cache_in_ddp_equals_one_process(two_ranks) -> None:
    """The tiny CLIP (ViT + BERT towers) with loss=siglip in DDP on two half batches, each rank embedding its
    4 pairs through the gradient cache in chunks of 3, against one plain process on all 8 pairs."""
    inputs, results = two_ranks
    model = worker.build_tiny_siglip(chunk_size=None)
    model.load_state_dict(inputs["model_state"])
    model.train()
    output = model(pixel_values=inputs["pixels"], input_ids=inputs["input_ids"],
                   attention_mask=inputs["attention_mask"])
    output.loss.backward()
    torch.testing.assert_close((results[0]["ddp"]["loss"] + results[1]["ddp"]["loss"]) / 2, output.loss.detach(),
                               **TIGHT)
    reference = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert {"logit_bias", "backbone.logit_scale"} <= reference.keys()
    for result in results:
        assert result["ddp"]["grads"].keys() == reference.keys()
        for name, grad in reference.items():
            torch.testing.assert_close(result["ddp"]["grads"][name], grad, rtol=1e-8, atol=1e-10, msg=name)
