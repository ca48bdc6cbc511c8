"""Input builders of image methods: the whole batch in, the model's view inputs out, on the device.

``MethodSpec.build_inputs`` of an image method is usually ``view_inputs("multi_view")`` (or
``"single_view"``): it builds the view generator from the recipe's ``views`` and ``data`` sections.
A method that needs more than views (pretext targets, labels, captions) writes its own builder and
can call a :class:`ViewInputs` inside it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from hfssl.views.generators import VIEW_KINDS, build_views


class ViewInputs:
    """``make_inputs(batch, generator)``: the views of ``batch["pixels"]`` (uint8 ``(B, C, H, W)``).

    The pixels are moved to the generator's device when the batch is elsewhere (the engine's
    prepared DataLoader already puts it on the training device). Other batch entries (``labels``)
    are not model inputs of a view-based method and are left out.
    """

    def __init__(self, view_function: Callable[[torch.Tensor, torch.Generator], dict[str, torch.Tensor]]) -> None:
        self.view_function = view_function

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        if "pixels" not in batch:
            raise ValueError(f"an image method needs batches with 'pixels' (uint8 (B, C, H, W)); got keys {sorted(batch)}")
        pixels = batch["pixels"]
        if pixels.device.type != generator.device.type:
            pixels = pixels.to(generator.device, non_blocking=True)
        return self.view_function(pixels, generator)


def view_inputs(kind: str) -> Callable[[Any, Any], ViewInputs]:
    """A ``MethodSpec.build_inputs`` making ``kind`` views (a name in :data:`VIEW_KINDS`) from the recipe."""
    if kind not in VIEW_KINDS:
        raise ValueError(f"unknown view kind {kind!r}; known: {', '.join(sorted(VIEW_KINDS))}")

    def build_inputs(recipe: Any, data: Any) -> ViewInputs:
        return ViewInputs(build_views(kind, recipe.views, recipe.data.image_size, recipe.data.channels))

    build_inputs.__qualname__ = f"view_inputs({kind!r})"
    return build_inputs
