"""MAE serves the ``reconstruction`` capability (issue 22): the removed patches predicted, the visible ones pasted
back, the loss's region as the mask, the mask drawn from the generator."""

from __future__ import annotations

import torch

from hfssl.reconstruction import reconstruction_errors
from tiny import tiny_model


def test_mae_reconstructions_cover_the_removed_patches_and_follow_the_generator():
    model = tiny_model("mae").eval()
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    result = model.get_reconstructions(images, torch.Generator().manual_seed(1))
    again = model.get_reconstructions(images, torch.Generator().manual_seed(1))
    assert torch.equal(result.mask, again.mask) and torch.equal(result.reconstructed, again.reconstructed)
    assert float(result.mask.mean()) == model.config.mask_ratio  # 12 of the 16 patches removed
    visible = result.mask == 0
    assert torch.equal(result.reconstructed.masked_select(visible.expand_as(images)),
                       images.masked_select(visible.expand_as(images)))  # visible patches pasted back
    assert float(result.corrupted.masked_select((~visible).expand_as(images)).abs().max()) == 0.0
    mse, _ = reconstruction_errors(result, (0.5,) * 3, (0.5,) * 3)
    removed = (~visible).expand_as(images)
    expected = [((result.reconstructed[i] - images[i])[removed[i]] ** 2).mean() for i in range(2)]
    torch.testing.assert_close(mse, torch.stack(expected))
