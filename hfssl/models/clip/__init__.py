"""CLIP / LiT (Radford et al. 2021; Zhai et al. 2022): contrastive image-text pre-training.

The method's spec: image-caption data (the ``image-text`` modality), inputs made on the device
(:class:`CaptionInputs`: one augmented view per image and the tokenised captions), and export of the
transformers dual encoder with its processor (:func:`export_dual_encoder`).

Text towers pooled otherwise than by their ``pooler_output`` (``model.text_pooling`` ``mean`` / ``cls``,
the default for sentence-transformers towers such as all-MiniLM-L6-v2) export a
:class:`PooledVisionTextDualEncoderModel`: transformers' ``VisionTextDualEncoderModel`` has no pooling
option and no transformers text model pools by a masked mean, so the export carries the class as remote
code (``modeling_pooled_dual_encoder.py`` beside the weights, ``auto_map`` in ``config.json``;
``trust_remote_code=True`` in plain transformers). It is written by hand rather than through
``register_for_auto_class``, which maps one Auto class per class, while the zero-shot pipeline loads
through ``AutoModelForZeroShotImageClassification`` and users through ``AutoModel``. hfssl registers
the same classes with the Auto classes, so hfssl loads such folders without remote code.
"""

from __future__ import annotations

import inspect
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModel, AutoModelForZeroShotImageClassification

from hfssl.export import ExportContext, image_export_settings, write_directory
from hfssl.files import atomic_write_text
from hfssl.models.clip.configuration_clip import HfsslCLIPConfig
from hfssl.models.clip.modeling_clip import (HfsslCLIPForPreTraining, HfsslCLIPOutput, load_tokenizer,
                                             transferable_dual_encoder)
from hfssl.models.clip.modeling_pooled_dual_encoder import (POOLED_MODEL_TYPE, PooledVisionTextDualEncoderConfig,
                                                             PooledVisionTextDualEncoderModel)
from hfssl.models.clip.pictures import draw_predictions
from hfssl.models.clip.towers import num_patches
from hfssl.registry import (IMAGE_FEATURES, IMAGE_TEXT, IMAGE_TEXT_EMBEDDINGS, LAYER_FEATURES, MethodSpec, Paper,
                            register_method)
from hfssl.settings import RecipeError
from hfssl.views import ViewInputs, build_views

logger = logging.getLogger(__name__)

PAPER = Paper(
    title="Learning Transferable Visual Models From Natural Language Supervision",
    url="https://arxiv.org/abs/2103.00020",
    bibtex=r"""@inproceedings{radford2021clip,
  title     = {Learning Transferable Visual Models From Natural Language Supervision},
  author    = {Radford, Alec and Kim, Jong Wook and Hallacy, Chris and Ramesh, Aditya and Goh, Gabriel and
               Agarwal, Sandhini and Sastry, Girish and Askell, Amanda and Mishkin, Pamela and Clark, Jack and
               Krueger, Gretchen and Sutskever, Ilya},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2021}
}""",
)


class CaptionInputs:
    """``make_inputs(batch, generator)``: one view of each image (``single_view``: random resized crop,
    optional flip, normalisation) and the tokenised captions, on the generator's device.

    Returns ``{"pixel_values": (B, C, S, S), "input_ids": (B, T), "attention_mask": (B, T)}`` (plus
    ``token_type_ids`` when the tokenizer makes them), captions padded to the longest in the batch
    and truncated at ``model.max_text_length``. With ``vision_config`` (``model.patch_dropout > 0``) also
    ``"patch_dropout_noise": (B, P)``, uniform noise from the generator that picks the patches each image
    keeps (so that a resumed run drops the same ones).
    """

    def __init__(self, views: ViewInputs, tokenizer: Any, max_length: int, vision_config: Any | None = None) -> None:
        self.views = views
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.vision_config = vision_config

    def __call__(self, batch: dict[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        if "texts" not in batch:
            raise ValueError(f"CLIP needs image-caption batches with 'texts'; got keys {sorted(batch)}")
        inputs = dict(self.views(batch, generator))
        tokens = self.tokenizer(list(batch["texts"]), padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        device = inputs["pixel_values"].device
        if self.vision_config is not None:
            pixels = inputs["pixel_values"]
            patches = num_patches(self.vision_config, *pixels.shape[-2:])
            inputs["patch_dropout_noise"] = torch.rand(pixels.shape[0], patches, generator=generator,
                                                       device=generator.device).to(device)
        inputs.update({name: value.to(device) for name, value in tokens.items()
                       if name in ("input_ids", "attention_mask", "token_type_ids")})
        return inputs


def build_inputs(recipe: Any, data: Any) -> CaptionInputs:
    """``MethodSpec.build_inputs``: single views of the recipe's ``views`` and the model's tokenizer."""
    config = HfsslCLIPConfig(**recipe.model)
    views = ViewInputs(build_views("single_view", recipe.views, recipe.data.image_size, recipe.data.channels))
    return CaptionInputs(views, load_tokenizer(config), config.max_text_length,
                         config.vision_config if config.patch_dropout > 0 else None)


def check_recipe(recipe: Any) -> None:
    """What can be checked without the pretrained towers' files (a LiT recipe names a run that may not
    exist yet; its folder is checked when training starts): the model section builds, a tokenizer is
    named, and the image tower's channels match the data's."""
    model = dict(recipe.model)
    if not (model.get("tokenizer_name_or_path") or model.get("text_name_or_path")):
        raise RecipeError("model.tokenizer_name_or_path is required when the text tower is built from a config "
                          "(model.text_config): give a tokenizer folder, Hub id or builtin:all-MiniLM-L6-v2")
    pretrained = {key: model.pop(key) for key in ("vision_name_or_path", "text_name_or_path") if model.get(key)}
    if "vision_name_or_path" in pretrained:
        model.pop("vision_config", None)
    if "text_name_or_path" in pretrained:
        model.pop("text_config", None)
        model.setdefault("tokenizer_name_or_path", pretrained["text_name_or_path"])
    for path_key, unlock_key in (("vision_name_or_path", "unlock_last_layers_image"),
                                 ("text_name_or_path", "unlock_last_layers_text")):
        unlock = model.get(unlock_key)
        if path_key in pretrained and isinstance(unlock, int) and not isinstance(unlock, bool) and unlock > 0:
            # The pretrained tower's depth is known once its folder is read, when training starts; here the
            # placeholder tower checks only the sign and the lock (patch_dropout likewise meets the placeholder
            # ViT here and the real image tower's type then).
            model[unlock_key] = 1
    try:
        config = HfsslCLIPConfig(**model)
    except (ValueError, TypeError) as error:
        raise RecipeError(f"model: {error}") from error
    channels = getattr(config.vision_config, "num_channels", 3)
    if "vision_name_or_path" not in pretrained and channels != recipe.data.channels:
        raise RecipeError(f"data.channels={recipe.data.channels} but the image tower takes {channels} channels; set "
                          f"model.vision_config.num_channels={recipe.data.channels} or data.channels={channels}")


def dual_encoder_settings(model: HfsslCLIPForPreTraining, recipe: Any) -> tuple[int, tuple, tuple, int]:
    """Image size, mean, std and channels of the exported processor: the recipe's evaluation transform,
    else the image tower's config (as for image encoders)."""
    return image_export_settings(model, recipe, model.config.vision_config)


def dual_encoder_of(model: HfsslCLIPForPreTraining, recipe: Any) -> tuple[Any, Any]:
    """The transferable dual encoder and processor of ``model`` (the run's recipe fixes the image transform)."""
    return transferable_dual_encoder(model, *dual_encoder_settings(model, recipe))


def export_dual_encoder(model: HfsslCLIPForPreTraining, output_dir: Path, context: ExportContext) -> Path:
    """``MethodSpec.export``: the ``CLIPModel`` / ``VisionTextDualEncoderModel`` (or, for mean/cls text pooling,
    ``PooledVisionTextDualEncoderModel`` with its code file) and its processor."""
    dual, processor = dual_encoder_of(model, context.recipe)
    with write_directory(output_dir) as staging:
        dual.save_pretrained(staging, safe_serialization=True)
        processor.save_pretrained(staging)
        if isinstance(dual, PooledVisionTextDualEncoderModel):  # the config's auto_map names this file
            shutil.copyfile(POOLED_CODE_FILE, Path(staging) / POOLED_CODE_FILE.name)
    files_dir = Path(context.files_dir) if context.files_dir is not None else Path(output_dir)
    if isinstance(dual, PooledVisionTextDualEncoderModel) and files_dir.resolve() != Path(output_dir).resolve():
        # RUN/encoder: transformers (5.x) fetches remote code from the repository root even when the model is
        # loaded with subfolder="encoder", so the run (and its Hub repository) holds the file there too.
        atomic_write_text(files_dir / POOLED_CODE_FILE.name, POOLED_CODE_FILE.read_text(encoding="utf-8"),
                          what="the dual encoder's code")
    logger.info("exported the dual encoder (%s) to %s", type(dual).__name__, output_dir)
    return Path(output_dir)


# The mean/cls-pooled dual encoder: hfssl loads exported folders with its own copy of the class.
POOLED_CODE_FILE = Path(inspect.getfile(PooledVisionTextDualEncoderModel))
AutoConfig.register(POOLED_MODEL_TYPE, PooledVisionTextDualEncoderConfig, exist_ok=True)
AutoModel.register(PooledVisionTextDualEncoderConfig, PooledVisionTextDualEncoderModel, exist_ok=True)
AutoModelForZeroShotImageClassification.register(PooledVisionTextDualEncoderConfig, PooledVisionTextDualEncoderModel,
                                                 exist_ok=True)

SPEC = register_method(MethodSpec(
    name="clip",
    display_name="CLIP",
    config_class=HfsslCLIPConfig,
    model_class=HfsslCLIPForPreTraining,
    modality=IMAGE_TEXT,
    family="image-text",
    paper=PAPER,
    build_inputs=build_inputs,
    export=export_dual_encoder,
    # The image tower's pooled features too (get_embeddings): knn / linear score it as they score SSL encoders.
    provides=(IMAGE_TEXT_EMBEDDINGS, IMAGE_FEATURES, LAYER_FEATURES),
    check_recipe=check_recipe,
    pictures=draw_predictions,
))

__all__ = ["HfsslCLIPConfig", "HfsslCLIPForPreTraining", "HfsslCLIPOutput", "CaptionInputs", "SPEC",
           "dual_encoder_of", "export_dual_encoder"]
