"""The context encoder's masks and its input builder (Pathak et al. 2016, sec. 3.3 "Region masks").

Three kinds of region, each ``(B, 1, S, S)`` float32 with 1 on the removed pixels, made on the generator's device:

* ``center``: the central square, ``round(mask_size * S)`` pixels on a side (the paper's 1/2 side, 1/4 of the
  image); it draws nothing.
* ``random_blocks``: ``num_blocks`` squares of ``round(block_size * S)`` pixels at uniform random places, possibly
  overlapping (the paper's "random block": several smaller blocks covering up to 1/4 of the image). One
  ``randint`` draw ``(B, num_blocks, 2)`` from the generator.
* ``random_region``: arbitrary shapes covering exactly ``round(region_ratio * S * S)`` pixels: uniform noise on a
  ``region_grid`` x ``region_grid`` grid (one ``rand`` draw ``(B, 1, g, g)``), upsampled bilinearly to ``S``, and its
  largest values removed. The paper takes its random shapes from PASCAL VOC segmentations (unavailable offline);
  these smooth blobs play the same role: regions without a fixed shape or place, so the encoder cannot learn the
  hole's edge.

:class:`ContextEncoderInputs` is the method's input builder: the ``single_view`` crop/flip view of each image
(the recipe's ``views``), then one mask per image from the same generator, after the view; so a resumed run, which
seeds the generator from the step, rebuilds the same masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from hfssl.configuration_utils import recipe_config_values
from hfssl.models.context_encoder.configuration_context_encoder import MASK_TYPES, ContextEncoderConfig, square_side
from hfssl.settings import RecipeError
from hfssl.views import ViewInputs, build_views

@dataclass(frozen=True)
class RegionMask:
    """How the context encoder removes a region (the config's mask fields; see the module docstring)."""

    mask_type: str = "center"
    mask_size: float = 0.5
    num_blocks: int = 4
    block_size: float = 0.25
    region_ratio: float = 0.25
    region_grid: int = 4

    @classmethod
    def from_values(cls, values: Any) -> RegionMask:
        """From a config (attributes) or a recipe's ``model`` values (a mapping); missing keys keep the defaults."""
        get = values.get if isinstance(values, dict) else (lambda key, default: getattr(values, key, default))
        return cls(**{name: get(name, getattr(cls, name)) for name in cls.__dataclass_fields__})

    def sample(self, batch: int, image_size: int, generator: torch.Generator | None,
               device: torch.device | None = None) -> torch.Tensor:
        """``(batch, 1, image_size, image_size)`` float32 masks, 1 = removed, on ``device`` (default: the
        generator's). ``center`` draws nothing from the generator."""
        device = device if device is not None else (generator.device if generator is not None else torch.device("cpu"))
        if self.mask_type == "center":
            return center_mask(batch, image_size, self.mask_size, device)
        if self.mask_type == "random_blocks":
            return random_block_mask(batch, image_size, self.num_blocks, self.block_size, generator, device)
        if self.mask_type == "random_region":
            return random_region_mask(batch, image_size, self.region_ratio, self.region_grid, generator, device)
        raise ValueError(f"mask_type must be one of {', '.join(MASK_TYPES)}, got {self.mask_type!r}")


def center_box(image_size: int, mask_size: float, grow: int = 0) -> tuple[int, int]:
    """Rows (and columns) ``[start, end)`` of the central square of side ``round(mask_size * S)`` (at least 1 pixel),
    grown by ``grow`` pixels on every side and clipped to the image."""
    side = square_side(mask_size, image_size)
    start = (image_size - side) // 2
    return max(0, start - grow), min(image_size, start + side + grow)


def center_mask(batch: int, image_size: int, mask_size: float, device: torch.device | None = None) -> torch.Tensor:
    """The central square of :func:`center_box`, ``(B, 1, S, S)``."""
    start, end = center_box(image_size, mask_size)
    mask = torch.zeros(batch, 1, image_size, image_size, device=device)
    mask[..., start:end, start:end] = 1.0
    return mask


def random_block_mask(batch: int, image_size: int, num_blocks: int, block_size: float,
                      generator: torch.Generator | None, device: torch.device | None = None) -> torch.Tensor:
    """The union of ``num_blocks`` squares of side ``round(block_size * S)`` whose top-left corners are drawn
    uniformly in ``[0, S - side]`` (one ``randint`` draw ``(B, num_blocks, 2)``: row, column), ``(B, 1, S, S)``."""
    side = square_side(block_size, image_size)
    draw_device = generator.device if generator is not None else device
    corners = torch.randint(0, image_size - side + 1, (batch, num_blocks, 2), generator=generator,
                            device=draw_device).to(device)
    coordinates = torch.arange(image_size, device=device)
    rows = (coordinates >= corners[..., :1]) & (coordinates < corners[..., :1] + side)  # (B, K, S)
    columns = (coordinates >= corners[..., 1:]) & (coordinates < corners[..., 1:] + side)  # (B, K, S)
    inside = rows.unsqueeze(-1) & columns.unsqueeze(-2)  # (B, K, S, S)
    return inside.any(dim=1, keepdim=True).float()


def random_region_mask(batch: int, image_size: int, region_ratio: float, region_grid: int,
                       generator: torch.Generator | None, device: torch.device | None = None) -> torch.Tensor:
    """Smooth random shapes of exactly ``round(region_ratio * S^2)`` pixels (at least 1) per image: the largest
    values of ``(B, 1, g, g)`` uniform noise upsampled bilinearly to ``S`` (equal values: the first pixels in
    row-major order), ``(B, 1, S, S)``."""
    draw_device = generator.device if generator is not None else device
    noise = torch.rand(batch, 1, region_grid, region_grid, generator=generator, device=draw_device).to(device)
    field = F.interpolate(noise, size=(image_size, image_size), mode="bilinear", align_corners=False)
    count = min(image_size * image_size, max(1, round(region_ratio * image_size * image_size)))
    # A stable sort breaks ties (the upsampling repeats values along the border) by pixel index, on every device.
    chosen = field.flatten(1).argsort(dim=1, descending=True, stable=True)[:, :count]  # (B, count)
    mask = torch.zeros(batch, image_size * image_size, device=device)
    mask.scatter_(1, chosen, 1.0)
    return mask.view(batch, 1, image_size, image_size)


class ContextEncoderInputs:
    """``make_inputs(batch, generator)`` of the context encoder: the ``single_view`` view of each image, then its
    mask (:meth:`RegionMask.sample` with the same generator).

    Returns ``{"pixel_values": (B, C, S, S) normalised clean views, "mask": (B, 1, S, S)}`` on the generator's
    device; the model removes the masked pixels itself (it needs the clean image as the target).
    """

    def __init__(self, views: Any, image_size: int, channels: int, mask: RegionMask) -> None:
        self.view_inputs = ViewInputs(build_views("single_view", views, image_size, channels))
        self.mask = mask

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        views = self.view_inputs(batch, generator)["pixel_values"]  # (B, C, S, S), normalised
        mask = self.mask.sample(views.shape[0], views.shape[-1], generator, views.device)
        return {"pixel_values": views, "mask": mask}


def context_encoder_inputs(recipe: Any, data: Any) -> ContextEncoderInputs:
    """``MethodSpec.build_inputs`` of the context encoder: the mask settings from the recipe's ``model`` section
    (the config's defaults for the keys it leaves out)."""
    mask = RegionMask.from_values(recipe_config_values(ContextEncoderConfig, dict(recipe.model)))
    return ContextEncoderInputs(recipe.views, recipe.data.image_size, recipe.data.channels, mask)


def check_recipe(recipe: Any) -> None:
    """Refuse, when the recipe is loaded, a central square that removes the whole image (no context left) and a
    ``model.image_size`` other than ``data.image_size`` (training sets it from the data)."""
    values = recipe_config_values(ContextEncoderConfig, dict(recipe.model))
    mask = RegionMask.from_values(values)
    size = recipe.data.image_size
    if values.get("image_size") is not None and values["image_size"] != size:
        raise RecipeError(f"method context_encoder: model.image_size={values['image_size']} differs from "
                          f"data.image_size={size}; leave model.image_size out (training sets it from the data)")
    if mask.mask_type == "center" and square_side(mask.mask_size, size) >= size:
        raise RecipeError(f"method context_encoder: model.mask_size={mask.mask_size} removes the whole {size}-px image, "
                          "leaving no context to encode; set model.mask_size below 1 (the paper's 0.5)")
