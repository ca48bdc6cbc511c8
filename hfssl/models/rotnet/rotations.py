"""RotNet's pretext task: every image at 0, 90, 180 and 270 degrees, with the rotation as its label.

Gidaris et al. 2018 (sec. 2.2 and 3.1) show the network all four rotations of each image in the same batch,
which they found better than one random rotation per image. :func:`rotate_all` builds that batch on the
device; :class:`RotationInputs` is the method's input builder: the usual crop/flip view of
:mod:`hfssl.views` (seeded by the step's generator, so a resumed run sees the same views), then the four
rotations. The rotations themselves draw nothing: the task built from a fixed view is fixed.
"""

from __future__ import annotations

from typing import Any

import torch

from hfssl.models.rotnet.configuration_rotnet import NUM_ROTATIONS
from hfssl.settings import RecipeError
from hfssl.views import ViewInputs, build_views
from hfssl.views.functional import check_square


def rotate_all(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All four rotations of every image of a square batch, image-major.

    Args:
        images: ``(B, C, S, S)``.

    Returns:
        ``(4B, C, S, S)`` where row ``4 * b + k`` is image ``b`` turned ``k * 90`` degrees counter-clockwise
        (``torch.rot90(image, k, dims=(-2, -1))``), and the labels ``(4B,)`` int64, ``k`` for that row.

    Raises:
        ValueError: the images are not square (a quarter turn would change their shape).
    """
    if images.ndim != 4:
        raise ValueError(f"RotNet rotates a batch of images (batch, channels, height, width), got shape "
                         f"{tuple(images.shape)}")
    check_square(images, "RotNet's inputs")
    turned = torch.stack([torch.rot90(images, k, dims=(-2, -1)) for k in range(NUM_ROTATIONS)], dim=1)  # (B, 4, C, S, S)
    labels = torch.arange(NUM_ROTATIONS, device=images.device).repeat(images.shape[0])  # (4B,): 0 1 2 3 0 1 ...
    return turned.reshape(-1, *images.shape[1:]), labels


class RotationInputs:
    """``make_inputs(batch, generator)`` of RotNet: one crop/flip view of each image (the recipe's ``views``
    through the ``single_view`` generator), then :func:`rotate_all`.

    Returns ``{"pixel_values": (4B, C, S, S), "labels": (4B,)}`` on the generator's device.
    """

    def __init__(self, views: Any, image_size: int, channels: int) -> None:
        self.view_inputs = ViewInputs(build_views("single_view", views, image_size, channels))

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        views = self.view_inputs(batch, generator)["pixel_values"]  # (B, C, S, S), normalised
        pixel_values, labels = rotate_all(views)
        return {"pixel_values": pixel_values, "labels": labels}


def rotation_inputs(recipe: Any, data: Any) -> RotationInputs:
    """``MethodSpec.build_inputs`` of RotNet."""
    return RotationInputs(recipe.views, recipe.data.image_size, recipe.data.channels)


def check_recipe(recipe: Any) -> None:
    """Refuse ``views.rotation_prob > 0``: a rotated view would carry the wrong rotation label."""
    if recipe.views.rotation_prob > 0:
        raise RecipeError(
            f"method rotnet predicts the rotation of each view, so the views must not be rotated already: "
            f"views.rotation_prob is {recipe.views.rotation_prob}; set views.rotation_prob=0 (RotNet shows every image "
            "at 0, 90, 180 and 270 degrees itself)"
        )
