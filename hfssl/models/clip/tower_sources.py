"""Pretrained towers of a CLIP / LiT model: what ``model.vision_name_or_path`` / ``model.text_name_or_path`` may name.

Each may be

* a plain encoder folder, Hub id or ``builtin:`` name (an hfssl vision run's ``encoder/``, a ``ViTModel``,
  ``builtin:all-MiniLM-L6-v2``): the tower is that model;
* an hfssl run directory: its exported ``encoder/`` (as above; a CLIP run's is a dual encoder, below), or,
  when the run has not been exported, the transferable part of the full model saved there
  (``export_backbone()``: what export would write; a grey run's is the 1-channel encoder, while its
  ``encoder/`` takes RGB). The run's method must serve image features (an image tower), text features
  (a text tower) or image-text embeddings (either tower of its dual encoder);
* a released image-text dual encoder (``CLIPModel``, ``SiglipModel``, ``VisionTextDualEncoderModel``
  folder or Hub id; any config with ``vision_config`` and ``text_config``): its ``vision_config`` /
  ``text_config`` and that tower's weights. Its projections and temperature are not taken (the CLIP
  model trains its own).

A run directory that holds only checkpoints (still training, or stopped before its final save) is refused
with the fix. Weights are copied by :func:`load_tower` + :func:`hfssl.backbones.load_tower_state`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel

from hfssl.backbones import dual_encoder_tower, resolve_pretrained_path
from hfssl.registry import (IMAGE_FEATURES, IMAGE_TEXT_EMBEDDINGS, TEXT_FEATURES, discover_methods, is_hfssl_run,
                            method_for_config)

VISION, TEXT = "vision", "text"
ENCODER, DUAL_ENCODER, HFSSL_MODEL = "encoder", "dual-encoder", "hfssl-model"
#: What an hfssl run's method must serve for each tower (image-text runs give either tower of their dual encoder).
_SERVES = {VISION: (IMAGE_FEATURES, IMAGE_TEXT_EMBEDDINGS), TEXT: (TEXT_FEATURES, IMAGE_TEXT_EMBEDDINGS)}


@dataclass(frozen=True)
class TowerSource:
    """Where a pretrained tower comes from.

    Attributes:
        key: the recipe key (``model.vision_name_or_path``), named in errors.
        value: the key's value as the recipe gives it.
        folder: the folder or Hub id ``from_pretrained`` reads (``builtin:`` names resolved, a run's ``encoder/``).
        kind: ``encoder`` (the folder is the tower), ``dual-encoder`` (take its tower) or ``hfssl-model`` (a
            run without ``encoder/``: the full model's transferable part).
        config: the config found in ``folder`` (the dual encoder's or the hfssl model's as a whole).
    """

    key: str
    value: str
    folder: str
    kind: str
    config: PretrainedConfig

    def describe(self) -> str:
        where = {ENCODER: "", DUAL_ENCODER: f" (the {self.config.model_type} dual encoder's tower)",
                 HFSSL_MODEL: " (the hfssl run's model, not exported)"}[self.kind]
        return f"{self.key}={self.value!r}{where}"


def _is_dual_encoder(config: PretrainedConfig) -> bool:
    return getattr(config, "vision_config", None) is not None and getattr(config, "text_config", None) is not None


def locate_tower(value: str, tower: str) -> TowerSource:
    """Find the tower ``value`` names (see the module docstring); ``tower`` is ``vision`` or ``text``.

    Raises:
        ValueError: naming the recipe key, what was found there and what to give instead.
    """
    key = f"model.{tower}_name_or_path"
    folder = resolve_pretrained_path(value)
    path = Path(folder)
    if is_hfssl_run(path) and (path / "encoder" / "config.json").is_file():
        folder = str(path / "encoder")
    elif path.is_dir() and not (path / "config.json").is_file() and (
            (path / "checkpoints").is_dir() or (path / "recipe.yaml").is_file()):
        raise ValueError(f"{key}={value!r} is an hfssl run directory without a saved model (only checkpoints: it is "
                         "still training, or stopped before its end); let it finish or resume it (hfssl train RECIPE "
                         "--output-dir RUN --resume), then give the run directory or its encoder/ folder")
    discover_methods()  # an hfssl run's config.json names an hfssl_* model type
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as error:
        raise ValueError(f"{key}={value!r} is not a model folder or reachable Hub id ({error}); give the folder that "
                         "holds the tower's config.json and weights: an hfssl run directory or its encoder/ folder, a "
                         "transformers encoder, or a CLIPModel / SiglipModel / VisionTextDualEncoderModel whose "
                         f"{tower} tower is taken") from error
    if is_hfssl_run(folder):
        spec = method_for_config(config)
        if not set(_SERVES[tower]) & set(spec.provides):
            raise ValueError(f"{key}={value!r} is an hfssl {spec.name} run, which has no {tower} tower (it provides "
                             f"{', '.join(spec.provides) or 'nothing'}); give a run of a method with "
                             f"{' or '.join(_SERVES[tower])}, or a transformers {tower} encoder")
        return TowerSource(key, value, folder, HFSSL_MODEL, config)
    kind = DUAL_ENCODER if _is_dual_encoder(config) else ENCODER
    source = TowerSource(key, value, folder, kind, config)
    if kind == ENCODER:
        _check_modality(source, config, tower)
    return source


def _check_modality(source: TowerSource, config: PretrainedConfig, tower: str) -> None:
    image_parts = any(getattr(config, name, None) is not None for name in ("num_channels", "image_size"))
    if tower == VISION and not image_parts:
        raise ValueError(f"{source.describe()} holds a {config.model_type} model, which takes no images; the image "
                         "tower must be a vision encoder (an hfssl vision run or its encoder/, a ViT / ConvNeXt folder) "
                         "or a CLIP-like dual encoder")
    if tower == TEXT and (image_parts or getattr(config, "vocab_size", None) is None):
        raise ValueError(f"{source.describe()} holds a {config.model_type} model, which is not a text encoder; the "
                         "text tower must be a text encoder (builtin:all-MiniLM-L6-v2, a BERT folder) or a CLIP-like "
                         "dual encoder")


def tower_config(value: str, tower: str) -> PretrainedConfig:
    """The architecture of the tower ``value`` names (a run without ``encoder/`` is loaded to read it)."""
    source = locate_tower(value, tower)
    if source.kind == ENCODER:
        return source.config
    if source.kind == DUAL_ENCODER:
        return getattr(source.config, f"{tower}_config")
    return _tower_of(source, tower).config


def _tower_of(source: TowerSource, tower: str) -> PreTrainedModel:
    model = AutoModel.from_pretrained(source.folder)
    if source.kind == ENCODER:
        return model
    if source.kind == DUAL_ENCODER:
        return dual_encoder_tower(model, tower)
    spec = method_for_config(model.config)
    if IMAGE_TEXT_EMBEDDINGS in spec.provides:
        return dual_encoder_tower(model.export_backbone(), tower)
    if tower == TEXT:
        return model.get_text_encoder()
    if IMAGE_FEATURES not in spec.provides:  # refused by locate_tower already
        raise ValueError(f"{source.describe()} has no {tower} tower")
    return model.export_backbone()


def load_tower(value: str, tower: str) -> tuple[nn.Module, TowerSource]:
    """The pretrained tower ``value`` names, with its weights, and where it came from."""
    source = locate_tower(value, tower)
    return _tower_of(source, tower), source


__all__ = ["TowerSource", "load_tower", "locate_tower", "tower_config"]
