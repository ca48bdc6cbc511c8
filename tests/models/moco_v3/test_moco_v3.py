"""MoCo v3: its symmetrised contrastive loss against a naive loop, the frozen random patch projection, and a
short digits run that does not collapse.

What MoCo v3 shares with MoCo v2 is checked beside v2's in tests/models/moco/test_moco.py (the losses'
input checks, v3's teacher momentum raised to one against v2's constant one); the two-process check of its
global-batch loss and gradients is in tests/test_distributed.py.
"""

from __future__ import annotations

import pytest
import torch

import hfssl  # noqa: F401 - registers the methods
from hfssl.losses import MoCoV3Loss
from collapse import assert_short_digits_run_does_not_collapse
from tiny import TINY_RESNET, tiny_model


# ---------------------------------------------------------------- the loss against a naive loop


def cosine(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (u * v).sum() / (u.norm() * v.norm())



def naive_ctr(query: torch.Tensor, key: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo v3's ctr(q, k) of Algorithm 1 written out: 2 tau * mean_i -log softmax_j(q_i . k_j / tau)[i]."""
    total = query.new_zeros(())
    for i in range(query.shape[0]):
        numerator = torch.exp(cosine(query[i], key[i]) / temperature)
        denominator = sum(torch.exp(cosine(query[i], key[j]) / temperature) for j in range(key.shape[0]))
        total = total - torch.log(numerator / denominator)
    return 2 * temperature * total / query.shape[0]



@pytest.mark.parametrize("temperature", [0.1, 0.2, 1.0])
@pytest.mark.parametrize("batch_size", [1, 2, 5])
def test_moco_v3_loss_matches_naive_loop_values_and_gradients(temperature, batch_size):
    generator = torch.Generator().manual_seed(batch_size)
    tensors = [torch.randn(batch_size, 7, generator=generator, dtype=torch.float64, requires_grad=True)
               for _ in range(4)]
    q1, q2, k1, k2 = tensors
    loss = MoCoV3Loss(temperature)(q1, q2, k1, k2)
    expected = naive_ctr(q1, k2, temperature) + naive_ctr(q2, k1, temperature)
    torch.testing.assert_close(loss, expected, rtol=1e-12, atol=1e-12)
    for grad, expected_grad in zip(torch.autograd.grad(loss, tensors), torch.autograd.grad(expected, tensors)):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- the patch projection


def test_moco_v3_freezes_the_random_patch_projection_only_when_asked():
    frozen = tiny_model("moco_v3")
    projection = frozen.backbone.embeddings.patch_embeddings.projection
    assert not any(p.requires_grad for p in projection.parameters())
    assert all(p.requires_grad for name, p in frozen.backbone.named_parameters()
               if "patch_embeddings" not in name and "pooler" not in name)
    trainable = tiny_model("moco_v3", freeze_patch_projection=False)
    assert all(p.requires_grad for p in trainable.backbone.embeddings.patch_embeddings.projection.parameters())
    # With a ResNet (no patch projection) the flag changes nothing.
    resnet = tiny_model("moco_v3", backbone_config=TINY_RESNET)
    assert all(p.requires_grad for p in resnet.backbone.parameters())


# ---------------------------------------------------------------- a short digits run does not collapse


@pytest.mark.parametrize("method", ["moco_v3"])
def test_short_digits_run_does_not_collapse(method, tmp_path):
    assert_short_digits_run_does_not_collapse(method, tmp_path)
