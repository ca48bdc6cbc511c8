"""Export the transferable encoder: a plain transformers model plus its image processor.

``DIR/encoder`` loads in a process that never imports hfssl::

    from transformers import AutoModel, AutoImageProcessor, pipeline
    model = AutoModel.from_pretrained("DIR/encoder")
    processor = AutoImageProcessor.from_pretrained("DIR/encoder")
    extractor = pipeline("image-feature-extraction", model="DIR/encoder")

The processor reproduces the evaluation transform of training (rescale to [0, 1], resize to the
training crop size, normalise with the training mean/std, RGB conversion when the encoder takes
3 channels), so features match what kNN and linear probes saw.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from transformers import PreTrainedModel, ViTImageProcessor

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
