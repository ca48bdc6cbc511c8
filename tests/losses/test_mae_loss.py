"""MAE's loss comes from transformers' ViTMAEForPreTraining: check it against a hand computation
(He et al. 2022, sec. 3: MSE on the removed patches only, optionally on per-patch normalised pixels)."""

from __future__ import annotations

import pytest
import torch

from hfssl.models.mae import MAEConfig, MAEForPreTraining
from tiny import TINY_VIT_MAE

PATCH = TINY_VIT_MAE["patch_size"]
SIZE = TINY_VIT_MAE["image_size"]


def patch_targets(pixel_values: torch.Tensor, normalise: bool) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, P*P*C), patches in row-major order, each flattened as (row, column, channel)."""
    batch, _, height, width = pixel_values.shape
    targets = []
    for image in pixel_values:
        patches = []
        for top in range(0, height, PATCH):
            for left in range(0, width, PATCH):
                patch = image[:, top : top + PATCH, left : left + PATCH].permute(1, 2, 0).reshape(-1)
                if normalise:  # per-patch mean and (unbiased) variance, eps 1e-6 as in the MAE code
                    patch = (patch - patch.mean()) / (patch.var() + 1e-6) ** 0.5
                patches.append(patch)
        targets.append(torch.stack(patches))
    return torch.stack(targets)


def hand_mask(noise: torch.Tensor, mask_ratio: float) -> torch.Tensor:
    """1 for removed patches: the patches with the largest noise, keeping int(L * (1 - ratio))."""
    length = noise.shape[1]
    keep = int(length * (1 - mask_ratio))
    mask = torch.ones_like(noise)
    for row in range(noise.shape[0]):
        order = sorted(range(length), key=lambda index: noise[row, index].item())
        for index in order[:keep]:
            mask[row, index] = 0
    return mask


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_mae_loss_equals_masked_patch_mse(norm_pix_loss: bool) -> None:
    torch.manual_seed(0)
    model = MAEForPreTraining(MAEConfig(backbone_config=dict(TINY_VIT_MAE), mask_ratio=0.75,
                                        norm_pix_loss=norm_pix_loss)).eval()
    generator = torch.Generator().manual_seed(1)
    pixel_values = torch.randn(3, 3, SIZE, SIZE, generator=generator)
    num_patches = (SIZE // PATCH) ** 2
    noise = torch.rand(3, num_patches, generator=generator)
    with torch.no_grad():
        output = model(pixel_values=pixel_values, noise=noise)

    mask = hand_mask(noise, 0.75)
    torch.testing.assert_close(output.mask, mask, rtol=0, atol=0)
    assert int(mask.sum()) == 3 * (num_patches - int(num_patches * 0.25))
    targets = patch_targets(pixel_values, norm_pix_loss)
    assert output.logits.shape == targets.shape
    per_patch = ((output.logits - targets) ** 2).mean(dim=-1)  # (B, L)
    expected = (per_patch * mask).sum() / mask.sum()
    torch.testing.assert_close(output.loss, expected, rtol=1e-5, atol=1e-6)
    # Visible patches do not count: the mean over all patches is a different number.
    assert abs(per_patch.mean().item() - expected.item()) > 1e-4
