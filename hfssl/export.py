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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import PreTrainedModel

from hfssl.files import (
    BOOKKEEPING,
    DIR,
    EXPORT,
    FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    TREE,
    Manifest,
    apply_umask,
    export_run_id,
    foreign_entries,
    make_staging_directory,
    read_manifest,
    replace_directory,
    storage_error,
    tree_size,
    update_manifest,
    write_manifest,
)
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.registry import is_hfssl_run

if TYPE_CHECKING:
    from hfssl.recipe import Recipe

LUMA_WEIGHTS = (0.299, 0.587, 0.114)

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
    it, lie inside another hfssl run or export, or be a non-empty folder other than an earlier
    export that records its files in ``.hfssl-manifest.json`` and holds nothing else
    (:func:`check_replaceable`). A ``config.json`` alone does not make a folder an export.
    """
    output = Path(output_dir).resolve()
    run = Path(run_dir).resolve() if run_dir is not None else None
    if run is not None and (output == run or output in run.parents):
        raise ExportError(f"cannot export to {output_dir}: the export replaces that folder, which holds the run "
                          f"{run_dir}; use the default (RUN/encoder) or a new folder")
    for folder in output.parents:
        if (folder / MANIFEST_FILE).is_file() or is_hfssl_run(folder):
            if folder != run:
                raise ExportError(f"cannot export to {output_dir}: it lies inside the hfssl run or export {folder}, "
                                  "whose files hfssl will not replace; give a folder outside it")
            break
    check_replaceable(Path(output_dir), own_encoder=run is not None and output == run / "encoder")


def check_replaceable(output_dir: Path, own_encoder: bool = False) -> None:
    """``output_dir`` may be replaced by an export: new, empty, or an earlier export whose manifest covers
    every file in it. ``own_encoder``: the run's own ``encoder/``, which an hfssl version before
    manifests wrote without one."""
    output_dir = Path(output_dir)
    if output_dir.is_file() or output_dir.is_symlink():
        raise ExportError(f"cannot export to {output_dir}: it is a file or a link; give a folder")
    if not output_dir.is_dir() or not [path for path in output_dir.iterdir() if path.name not in BOOKKEEPING]:
        return
    manifest = read_manifest(output_dir)
    if manifest is None:
        if own_encoder:
            return
        if is_hfssl_run(output_dir) or (output_dir / "checkpoints").is_dir():
            raise ExportError(f"cannot export to {output_dir}: it holds an hfssl run, which an export would delete; "
                              "give a new or empty folder")
        shown = ", ".join(foreign_entries(output_dir, None)[:6])
        raise ExportError(
            f"cannot export to {output_dir}: it holds files hfssl did not write ({shown}; no {MANIFEST_FILE}), so it "
            "is not an earlier export, and an export would delete them; give a new or empty folder (an export of an hfssl version before manifests has "
            "none either: delete it yourself to export there)")
    if manifest.kind != EXPORT:
        raise ExportError(f"cannot export to {output_dir}: it holds an hfssl {manifest.kind}, not an export; give a new "
                          "or empty folder")
    foreign = foreign_entries(output_dir, manifest)
    if foreign:
        raise ExportError(f"cannot export to {output_dir}: it holds files the earlier export did not write "
                          f"({', '.join(foreign[:6])}), which replacing it would delete; move them away first")


@contextmanager
def write_directory(output_dir: str | Path, needed: int | None = None, run_id: str | None = None) -> Iterator[Path]:
    """Yield a staging folder beside ``output_dir``; on success it replaces ``output_dir`` as a whole.

    ``output_dir`` must be new, empty or an earlier export (:func:`check_replaceable`). The new folder
    gets the umask's modes and a manifest of its files (kind ``export``, the run id: ``run_id``, else
    :data:`hfssl.files.export_run_id`, else the enclosing run's). A failure or kill leaves the previous
    ``output_dir`` untouched (the staging folder is removed, or left as a hidden ``.NAME.tmp-*`` folder
    after a kill); a full disk raises :class:`hfssl.errors.StorageError` naming the space ``needed``
    (by default the previous export's size, else what was written so far).
    """
    output_dir = Path(output_dir)
    check_replaceable(output_dir, own_encoder=output_dir.name == "encoder" and is_hfssl_run(output_dir.parent))
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = make_staging_directory(output_dir.parent, f".{output_dir.name}.tmp-")
    # Inside a run, its manifest records the staging folder, so a kill during the export leaves nothing unrecorded.
    recorded = (output_dir.parent / MANIFEST_FILE).is_file()
    if recorded:
        update_manifest(output_dir.parent, add={staging.name: TREE})
    try:
        try:
            yield staging
            _write_export_manifest(staging, output_dir, run_id)
        except (OSError, RuntimeError) as error:
            if isinstance(error, RuntimeError) and "write" not in str(error).lower():
                raise
            size = needed or tree_size(output_dir) or tree_size(staging)
            raise storage_error(error, output_dir, "export", size,
                                fix=f"{output_dir} is unchanged" if output_dir.exists() else "nothing was exported")
        lock = output_dir / LOCK_FILE
        if lock.is_file():  # the lock this process holds on the folder stays the folder's lock after the swap
            try:
                os.link(lock, staging / LOCK_FILE)
            except OSError:
                pass
        replace_directory(staging, output_dir)
        if recorded:
            update_manifest(output_dir.parent, add={output_dir.name: TREE}, remove=[staging.name])
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if recorded:
            update_manifest(output_dir.parent, remove=[staging.name])
        raise


def _write_export_manifest(staging: Path, output_dir: Path, run_id: str | None) -> None:
    apply_umask(staging)
    if run_id is None:
        run_id = export_run_id.get()
    if not run_id:
        parent = read_manifest(output_dir.parent) if (output_dir.parent / MANIFEST_FILE).is_file() else None
        run_id = parent.run_id if parent is not None else ""
    entries = {}
    for path in sorted(staging.rglob("*")):
        entries[path.relative_to(staging).as_posix()] = DIR if path.is_dir() and not path.is_symlink() else FILE
    write_manifest(staging, Manifest(kind=EXPORT, run_id=run_id, entries=entries, created=True))


def build_image_processor(image_size: int, mean: tuple[float, ...], std: tuple[float, ...], channels: int) -> Any:
    """The exported image processor: what hfssl's data module and evaluation transform do to an image.

    A ``CLIPImageProcessor`` (any model type loads it through ``AutoImageProcessor``): the shorter side
    resized to ``image_size`` with PIL's bilinear filter, then the centred ``image_size`` square cropped,
    as :mod:`hfssl.data.decode` crops the centred square and resizes it (a ``ViTImageProcessor`` would
    squash a non-square image instead); rescale by 1/255 and normalise. Images are read as transformers'
    ``load_image`` reads them (alpha dropped, :mod:`hfssl.data.decode`), which is what the pipelines do.
    """
    # Imported here: transformers warns on the first access to an image processor without torchvision,
    # which every `import hfssl` would otherwise print.
    from transformers import CLIPImageProcessor

    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"views.mean/std need {channels} values for {channels}-channel images, got {mean} / {std}")
    return CLIPImageProcessor(
        do_resize=True,
        size={"shortest_edge": image_size},
        resample=2,  # PIL bilinear, as the view generator's resize
        do_center_crop=True,
        crop_size={"height": image_size, "width": image_size},
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
    processor: Any = None,
) -> Path:
    """Write ``output_dir`` (usually ``DIR/encoder``) atomically: the backbone and its processor.

    Args:
        model: an hfssl model (its ``export_backbone()`` is saved) or a plain
            transformers model.
        output_dir: destination folder; replaced as a whole only once the new one is complete.
        image_size / mean / std / channels: the evaluation transform of the run.
        processor: an image processor to save instead of :func:`build_image_processor`'s (colorization's,
            which takes a prepared lightness image: :mod:`hfssl.color_prediction`).
    """
    output_dir = Path(output_dir)
    backbone = model.export_backbone() if isinstance(model, HfsslPreTrainedModel) else model
    if channels == 1:
        backbone = grey_to_rgb_backbone(backbone)
        mean, std, channels = tuple(mean) * 3, tuple(std) * 3, 3
    if processor is None:
        processor = build_image_processor(image_size, tuple(mean), tuple(std), channels)
    needed = sum(tensor.numel() * tensor.element_size() for tensor in backbone.state_dict().values())
    with write_directory(output_dir, needed=needed) as staging:
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

