"""Export per family: each method says what its transferable part is and how it is written.

``MethodSpec.export`` is a callable ``(model, output_dir, context) -> Path``. This module holds
the exporters families share and the safe directory writing they all use:

* :func:`export_image_encoder` (vision SSL, masked image modelling): the plain transformers
  backbone (``model.export_backbone()`` or ``get_backbone()``) and an image processor equal to the
  training evaluation transform;
* a method with another transferable part writes its own exporter next to its model
  (word2vec: ``hfssl/models/word2vec/export.py``, word vectors + tokenizer + gensim files) with
  :func:`write_directory` for the atomic swap.

Image encoders: ``DIR/encoder`` loads in a process that never imports hfssl::

``DIR/encoder`` loads in a process that never imports hfssl::

    from transformers import AutoModel, AutoImageProcessor, pipeline
    model = AutoModel.from_pretrained("DIR/encoder")
    processor = AutoImageProcessor.from_pretrained("DIR/encoder")
    extractor = pipeline("image-feature-extraction", model="DIR/encoder")

The processor reproduces the evaluation transform of training (rescale to [0, 1], resize to the
training crop size, normalise with the training mean/std), so features match what kNN and linear
probes saw.

Grey encoders (trained with ``data.channels: 1``) are exported with 3 input channels, because
transformers' image pipelines convert every image to RGB. The first layer's weights ``w`` become
``w * (0.299, 0.587, 0.114)`` (ITU-R 601 luma) and the mean/std are repeated: as the three
coefficients sum to 1, ``conv(normalise(RGB)) = conv_grey(normalise(luma(RGB)))``, so the exported
encoder computes exactly the trained function on the luma of colour images and on grey images
(R = G = B) alike.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedModel

from hfssl.modeling_utils import HfsslPreTrainedModel

if TYPE_CHECKING:
    from hfssl.recipe import Recipe

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: Files that make a folder look like an earlier export (which an export may replace).
EXPORT_MARKERS = ("config.json",)

logger = logging.getLogger(__name__)


class ExportError(ValueError):
    """An export that would overwrite or delete files it does not own; the message says why and the fix."""


@dataclass
class ExportContext:
    """What an exporter may need beside the model.

    Attributes:
        recipe: the run's resolved recipe (image size and normalisation, data settings), or ``None``
            for a model that was not loaded from a run.
        run_dir: the run directory, where data-derived artifacts (a tokenizer) were saved, or ``None``.
        files_dir: where side files go (word2vec's gensim files): the run directory when exporting
            into ``RUN/encoder``, the export folder itself otherwise.
    """

    recipe: Recipe | None = None
    run_dir: Path | None = None
    files_dir: Path | None = None


def check_export_target(output_dir: Path, run_dir: Path | None) -> None:
    """Refuse an export that would replace a folder holding the run or files that are not an export.

    The export replaces ``output_dir`` as a whole, so it must not be the run directory, lie above
    it, or be a non-empty folder that is not an earlier export (no ``config.json``).
    """
    output = output_dir.resolve()
    if run_dir is not None:
        run = run_dir.resolve()
        if output == run or output in run.parents:
            raise ExportError(f"cannot export to {output_dir}: the export replaces that folder, which holds the run "
                              f"{run_dir}; use the default (RUN/encoder) or a new folder")
    if output.is_file():
        raise ExportError(f"cannot export to {output_dir}: it is a file; give a folder")
    if output.is_dir() and any(output.iterdir()) and not any((output / name).is_file() for name in EXPORT_MARKERS):
        raise ExportError(f"cannot export to {output_dir}: it is a non-empty folder that is not an earlier export "
                          "(no config.json); give a new or empty folder")


@contextmanager
def write_directory(output_dir: str | Path) -> Iterator[Path]:
    """Yield a staging folder beside ``output_dir``; on success it replaces ``output_dir`` as a whole.

    A failure or kill leaves the previous ``output_dir`` untouched (the staging folder is removed,
    or left as a hidden ``.NAME.tmp-*`` folder after a kill).
    """
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        yield staging
        _replace_directory(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def build_image_processor(image_size: int, mean: tuple[float, ...], std: tuple[float, ...], channels: int) -> Any:
    """The image processor (a ``ViTImageProcessor``) matching hfssl's evaluation transform (see :mod:`hfssl.views`)."""
    # Imported here: transformers warns on the first access to ViTImageProcessor without torchvision,
    # which every `import hfssl` would otherwise print.
    from transformers import ViTImageProcessor

    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"views.mean/std need {channels} values for {channels}-channel images, got {mean} / {std}")
    return ViTImageProcessor(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        resample=2,  # PIL bilinear, as the view generator's resize
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(mean),
        image_std=list(std),
        do_convert_rgb=channels == 3,
    )


def grey_to_rgb_backbone(backbone: PreTrainedModel) -> PreTrainedModel:
    """A copy of a 1-channel backbone that takes RGB and computes the grey model on its luma.

    Every weight whose shape differs only by its input-channel axis (1 -> 3) is the first layer's
    (ResNet's stem conv, ViT's and ConvNeXt's patch embedding) and is spread over R, G, B with
    :data:`LUMA_WEIGHTS`; everything else is copied unchanged.
    """
    config = backbone.config.__class__.from_dict(backbone.config.to_dict())
    config.num_channels = 3
    rgb = backbone.__class__(config)
    source = backbone.state_dict()
    target = rgb.state_dict()
    converted = {}
    for key, value in source.items():
        expected = target[key].shape
        if value.shape != expected:
            if value.ndim >= 2 and value.shape[1] == 1 and expected[1] == 3 and value.shape[2:] == expected[2:]:
                luma = torch.tensor(LUMA_WEIGHTS, dtype=value.dtype).view(1, 3, *([1] * (value.ndim - 2)))
                value = value * luma
            else:
                raise ValueError(f"cannot convert {key} of shape {tuple(value.shape)} to {tuple(expected)} for RGB input")
        converted[key] = value
    rgb.load_state_dict(converted)
    return rgb.eval()


def export_encoder(
    model: PreTrainedModel,
    output_dir: str | Path,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    channels: int = 3,
) -> Path:
    """Write ``output_dir`` (usually ``DIR/encoder``) atomically: the backbone and its processor.

    Args:
        model: an hfssl model (its ``export_backbone()`` is saved) or a plain
            transformers model.
        output_dir: destination folder; replaced as a whole only once the new one is complete.
        image_size / mean / std / channels: the evaluation transform of the run.
    """
    output_dir = Path(output_dir)
    backbone = model.export_backbone() if isinstance(model, HfsslPreTrainedModel) else model
    if channels == 1:
        backbone = grey_to_rgb_backbone(backbone)
        mean, std, channels = tuple(mean) * 3, tuple(std) * 3, 3
    processor = build_image_processor(image_size, tuple(mean), tuple(std), channels)
    with write_directory(output_dir) as staging:
        backbone.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)
        _point_processor_at_backbone(staging, backbone)
    logger.info("exported encoder (%s) to %s", type(backbone).__name__, output_dir)
    return output_dir


def _point_processor_at_backbone(directory: Path, backbone: PreTrainedModel) -> None:
    # AutoImageProcessor resolves the processor class from preprocessor_config.json; name it
    # explicitly so it does not depend on the model type's default processor mapping.
    path = directory / "preprocessor_config.json"
    data = json.loads(path.read_text())
    data["image_processor_type"] = "ViTImageProcessor"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _replace_directory(staging: Path, target: Path) -> None:
    """Swap ``staging`` into ``target``: the old folder is removed only after the rename."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, target)


def image_export_settings(model: Any, recipe: Recipe | None, image_config: Any = None,
                          ) -> tuple[int, tuple[float, ...], tuple[float, ...], int]:
    """Image size, mean, std and channels of the exported processor: the recipe's, else those of
    ``image_config`` (default: the model's ``backbone_config``; CLIP passes its ``vision_config``)."""
    if recipe is not None:
        return (recipe.views.crop_size or recipe.data.image_size, tuple(recipe.views.mean), tuple(recipe.views.std),
                recipe.data.channels)
    backbone_config = image_config if image_config is not None else model.config.backbone_config
    channels = int(getattr(backbone_config, "num_channels", 3))
    image_size = getattr(backbone_config, "image_size", None)
    if not isinstance(image_size, int):
        raise ValueError(
            f"cannot tell the input size of {type(model).__name__}: it was not loaded from an hfssl run directory "
            "with a recipe.yaml. Save it with save_pretrained into a run directory (with recipe.yaml) or use "
            "`hfssl push RUN_DIR`"
        )
    logger.warning("no recipe.yaml beside the model: the exported image processor uses image size %d and "
                   "mean/std 0.5, which may differ from the training normalisation", image_size)
    return image_size, (0.5,) * channels, (0.5,) * channels, channels


def export_image_encoder(model: PreTrainedModel, output_dir: Path, context: ExportContext) -> Path:
    """``MethodSpec.export`` of image methods: the backbone and the image processor of the run."""
    image_size, mean, std, channels = image_export_settings(model, context.recipe)
    return export_encoder(model, output_dir, image_size, mean, std, channels)


Exporter = Callable[[PreTrainedModel, Path, ExportContext], Path]

