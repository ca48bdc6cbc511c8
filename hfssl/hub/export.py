"""Export the transferable encoder: a plain transformers model plus its image processor.

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
from pathlib import Path

import torch
from transformers import PreTrainedModel, ViTImageProcessor

LUMA_WEIGHTS = (0.299, 0.587, 0.114)

logger = logging.getLogger(__name__)


def build_image_processor(image_size: int, mean: tuple[float, ...], std: tuple[float, ...], channels: int) -> ViTImageProcessor:
    """The image processor matching hfssl's evaluation transform (see :mod:`hfssl.views`)."""
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
        model: an hfssl model (``export_backbone()`` or ``get_backbone()`` is saved) or a plain
            transformers model.
        output_dir: destination folder; replaced as a whole only once the new one is complete.
        image_size / mean / std / channels: the evaluation transform of the run.
    """
    output_dir = Path(output_dir)
    if hasattr(model, "export_backbone"):
        backbone = model.export_backbone()
    elif hasattr(model, "get_backbone"):
        backbone = model.get_backbone()
    else:
        backbone = model
    if channels == 1:
        backbone = grey_to_rgb_backbone(backbone)
        mean, std, channels = tuple(mean) * 3, tuple(std) * 3, 3
    processor = build_image_processor(image_size, tuple(mean), tuple(std), channels)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        backbone.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)
        _point_processor_at_backbone(staging, backbone)
        _replace_directory(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
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
