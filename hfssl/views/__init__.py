"""Batched, seeded view generators that run on the training device.

``build_views(kind, views_config, image_size, channels)`` returns ``callable(pixels, generator)``
turning a uint8 batch ``(B, C, H, W)`` into the model's inputs on the same device;
``build_eval_transform(views_config, image_size)`` is the deterministic resize + normalise used
for evaluation features, matching the exported image processor. The operations with explicit
parameters live in :mod:`hfssl.views.functional`, the random parameters in
:mod:`hfssl.views.parameters`; :func:`view_inputs` is the ``MethodSpec.build_inputs`` of image methods.
"""

from hfssl.views.config import ViewsConfig
from hfssl.views.generators import (
    VIEW_KINDS,
    EvalTransform,
    MultiViewGenerator,
    SingleViewGenerator,
    build_eval_transform,
    build_views,
)
from hfssl.views.inputs import ViewInputs, view_inputs

__all__ = [
    "ViewsConfig",
    "ViewInputs",
    "view_inputs",
    "VIEW_KINDS",
    "EvalTransform",
    "MultiViewGenerator",
    "SingleViewGenerator",
    "build_eval_transform",
    "build_views",
]
