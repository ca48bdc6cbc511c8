"""Configuration of contrastive image-text pre-training (CLIP, Radford et al. 2021; LiT, Zhai et al. 2022;
SigLIP's sigmoid loss, Zhai et al. 2023)."""

from __future__ import annotations

import json
import math
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from hfssl.backbones import resolve_backbone_config, resolve_pretrained_path
from hfssl.configuration_utils import check_range
from hfssl.models.clip.tower_sources import tower_config
from hfssl.models.clip.towers import check_patch_dropout, check_unlock

#: Vision model types whose ``pooler_output`` is ``(B, C, 1, 1)``: transformers' dual encoders
#: project ``pooler_output`` directly, so these cannot be an image tower there.
UNPOOLED_VISION_TYPES = ("resnet", "regnet", "bit", "van")
#: CLIP's ceiling on the learned logit scale (Radford et al. 2021, sec. 2.5: "clipped ... to 100").
MAX_LOGIT_SCALE = 100.0
#: ``model.loss`` choices: CLIP's symmetric softmax cross entropy, SigLIP's pairwise sigmoid.
LOSSES = ("clip", "siglip")
#: Initial ``t`` of ``logits = exp(t) * cos (+ b)`` per loss: CLIP's ``log(1 / 0.07)`` (sec. 2.5), SigLIP's
#: ``log 10`` (Zhai et al. 2023, sec. 3.1 / algorithm 1).
LOGIT_SCALE_INIT = {"clip": math.log(1 / 0.07), "siglip": math.log(10.0)}
#: A small BERT text tower (the text encoder used when none is given): 4 layers, 256 wide.
DEFAULT_TEXT_CONFIG = {"model_type": "bert", "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
                       "intermediate_size": 1024, "max_position_embeddings": 128}
#: How the text tower's tokens become one vector before the text projection (``model.text_pooling``).
TEXT_POOLINGS = ("pooler", "mean", "cls")


def _tower_config(value: PretrainedConfig | dict[str, Any] | str | None, path: str | None, default: Any,
                  name: str) -> PretrainedConfig:
    if path is not None and value is None:
        # The architecture of a pretrained tower; its weights are loaded when training starts.
        # An encoder folder, an hfssl run (its encoder/) or a dual encoder's tower (hfssl.models.clip.tower_sources).
        value = tower_config(path, name.replace("_config", ""))
    if value is None:
        value = default
    try:
        return resolve_backbone_config(value, default)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from error


class HfsslCLIPConfig(PretrainedConfig):
    """Configuration of :class:`HfsslCLIPForPreTraining`: two towers, their projections and the temperature.

    Defaults follow CLIP where they transfer (projection to a shared space, temperature initialised
    to 0.07, logit scale clipped at 100, sec. 2.5); the towers are any transformers vision and text
    encoders, from a config (random initialisation) or a pretrained folder / Hub id / ``builtin:``
    name (then loaded when training starts, as ``backbone_name_or_path`` is for image methods).

    Args:
        vision_config: the image tower: a transformers config, a dict with ``model_type`` or a preset of
            :data:`hfssl.backbones.BACKBONE_PRESETS` (default ``vit-tiny-patch4``). Its pooled output
            (``pooler_output``, ``(B, hidden)``) is projected, as transformers' dual encoders do.
        vision_name_or_path: pretrained image tower: an hfssl vision run (its directory or ``encoder/``) for
            LiT, any transformers vision encoder, or the image tower of a CLIP-like checkpoint (``CLIPModel``,
            ``SiglipModel``, ``VisionTextDualEncoderModel`` folder or Hub id); see :mod:`hfssl.models.clip.tower_sources`.
        text_config: the text tower (default a 4-layer BERT, :data:`DEFAULT_TEXT_CONFIG`); its
            ``vocab_size`` must cover the tokenizer's.
        text_name_or_path: pretrained text tower (``builtin:all-MiniLM-L6-v2``, a folder or a Hub id, an hfssl
            text run, or the text tower of a CLIP-like checkpoint, whose tokenizer is then the default).
        tokenizer_name_or_path: the tokenizer of the captions (default: ``text_name_or_path``).
        projection_dim: width of the shared embedding space.
        loss: ``"clip"`` (default): the symmetric softmax cross entropy of CLIP (:class:`hfssl.losses.CLIPLoss`);
            ``"siglip"``: the pairwise sigmoid loss of SigLIP (:class:`hfssl.losses.SigLIPLoss`,
            ``logits = exp(t) * cos + b`` with a learned bias ``b``). The bias is a parameter of the hfssl
            model (``logit_bias``, saved and resumed with it) but not of the exported transformers dual encoder,
            which has no bias slot and keeps only ``logit_scale``: a bias adds the same constant to every
            logit, so the softmax over candidate labels and the zero-shot pipeline's ranking are unchanged;
            only ``sigmoid(logits_per_image)`` misses it (add ``logit_bias`` from the full model to recover
            the trained pairwise probabilities).
        logit_scale_init_value: initial ``t`` of ``logits = exp(t) * cos``; default per loss: ``log(1 / 0.07)``
            for CLIP, ``log 10`` for SigLIP.
        logit_bias_init_value: initial bias ``b`` of SigLIP's logits (-10 in the paper); unused by CLIP.
        max_logit_scale: ``exp(t)`` is clipped to ``[1, max_logit_scale]`` (100 in the paper; ``t`` to
            ``[0, ln max_logit_scale]`` as in the official code).
        lock_image_tower / lock_text_tower: keep that tower fixed (LiT locks the image tower): no
            gradients, inference mode (no dropout); its projection is still trained.
        max_text_length: captions are truncated to this many tokens.
        gather_distributed: use every process's pairs as negatives (SigLIP: every process's texts).
        patch_dropout: fraction of an image's patch tokens dropped in training (FLIP, Li et al. 2023; 0 =
            off, in ``[0, 1)``): each image keeps its [CLS] and a random ``max(1, floor(P * (1 - p)))`` of its
            ``P`` patches, drawn from the step's generator. ViT, DeiT and CLIP vision towers only; evaluation
            and the exported model see every patch (:mod:`hfssl.models.clip.towers`).
        unlock_last_layers_image / unlock_last_layers_text: in a locked tower, the last N layers (ConvNeXt:
            stages) and the modules after them (final LayerNorm, pooler) train; the rest stays frozen in
            inference mode (open_clip's ``lock(unlocked_groups=N)``; 0 = LiT). Needs the tower's lock; at most
            its number of layers.
        text_pooling: what the text projection takes: ``"pooler"`` (the tower's ``pooler_output``, as
            transformers' dual encoders do: BERT's dense + tanh on ``[CLS]``, a CLIP text tower's
            end-of-text token), ``"mean"`` (the attention-mask weighted mean of ``last_hidden_state``,
            how sentence-transformers towers such as all-MiniLM-L6-v2 were trained) or ``"cls"``
            (``last_hidden_state[:, 0]``, no pooler). Default: the pooling of a sentence-transformers
            ``text_name_or_path`` (its ``modules.json`` / ``1_Pooling/config.json``), else ``"pooler"``.
            A CLIP text tower keeps its own end-of-text pooling (only ``"pooler"``). With ``"mean"`` or
            ``"cls"`` the dual encoder is a :class:`~hfssl.models.clip.modeling_pooled_dual_encoder.
            PooledVisionTextDualEncoderModel` and the export loads with ``trust_remote_code=True``.
        gradient_cache_chunk_size: in training, embed each tower's batch in chunks of this many pairs through
            the gradient cache (:func:`hfssl.losses.gradient_cache.cached_embeddings`, Gao et al. 2021): the
            loss sees the whole batch and the gradients equal the whole batch's, while a trainable tower holds
            the activations of one chunk at a time. ``None`` (default): one plain forward. A tower without
            trainable parameters (a locked one) keeps no activations anyway and is not recomputed; a locked
            tower with unlocked last layers goes through the cache (the gradients of its trainable layers).
    """

    model_type = "hfssl_clip"
    sub_configs = {"vision_config": AutoConfig, "text_config": AutoConfig}

    def __init__(
        self,
        vision_config: PretrainedConfig | dict[str, Any] | str | None = None,
        vision_name_or_path: str | None = None,
        text_config: PretrainedConfig | dict[str, Any] | None = None,
        text_name_or_path: str | None = None,
        tokenizer_name_or_path: str | None = None,
        projection_dim: int = 512,
        logit_scale_init_value: float | None = None,
        max_logit_scale: float = MAX_LOGIT_SCALE,
        lock_image_tower: bool = False,
        lock_text_tower: bool = False,
        max_text_length: int = 32,
        gather_distributed: bool = True,
        patch_dropout: float = 0.0,
        unlock_last_layers_image: int = 0,
        unlock_last_layers_text: int = 0,
        text_pooling: str | None = None,
        loss: str = "clip",
        logit_bias_init_value: float = -10.0,
        gradient_cache_chunk_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        if loss not in LOSSES:
            raise ValueError(f"model.loss={loss!r} is not a loss of this method; choose one of {', '.join(LOSSES)} "
                             "(clip: softmax cross entropy, siglip: pairwise sigmoid)")
        if logit_scale_init_value is None:
            logit_scale_init_value = LOGIT_SCALE_INIT[loss]
        check_range("logit_bias_init_value", logit_bias_init_value, -1e4, 1e4)
        if gradient_cache_chunk_size is not None and (isinstance(gradient_cache_chunk_size, bool)
                                                      or not isinstance(gradient_cache_chunk_size, int)
                                                      or gradient_cache_chunk_size < 1):
            raise ValueError("model.gradient_cache_chunk_size must be an integer >= 1 (pairs per chunk) or null for "
                             f"no gradient cache, got {gradient_cache_chunk_size!r}")
        check_range("projection_dim", projection_dim, 1, 1 << 16)
        check_range("max_logit_scale", max_logit_scale, 1.0, 1e4)
        check_range("logit_scale_init_value", logit_scale_init_value, 0.0, math.log(max_logit_scale))
        check_range("max_text_length", max_text_length, 2, 1 << 16)
        if lock_image_tower and lock_text_tower:
            raise ValueError("lock_image_tower and lock_text_tower are both true: nothing but the projections would "
                             "train; lock one tower at most")
        self.vision_config = _tower_config(vision_config, vision_name_or_path, "vit-tiny-patch4", "vision_config")
        self.text_config = _tower_config(text_config, text_name_or_path, dict(DEFAULT_TEXT_CONFIG), "text_config")
        if getattr(self.vision_config, "hidden_size", None) is None and getattr(self.vision_config, "hidden_sizes", None):
            # transformers' dual encoder reads the image tower's width from ``hidden_size``; convolutional
            # configs (ConvNeXt) name it ``hidden_sizes[-1]``. Saved with the config, so the exported
            # model loads in plain transformers too.
            self.vision_config.hidden_size = int(self.vision_config.hidden_sizes[-1])
        vision_type = self.vision_config.model_type
        if vision_type in UNPOOLED_VISION_TYPES:
            raise ValueError(
                f"vision_config of type {vision_type!r} cannot be a dual-encoder image tower: its pooler_output is "
                "(batch, channels, 1, 1), which transformers' VisionTextDualEncoderModel projects as it is. Use a "
                "ConvNeXt, ViT, Swin, DeiT or CLIP vision tower (for LiT, pre-train that backbone with an hfssl "
                "vision method)")
        if self.text_config.model_type in ("clip_vision_model",) or self.vision_config.model_type == "clip_text_model":
            raise ValueError("vision_config and text_config are swapped: the vision tower takes images, the text "
                             "tower captions")
        self.vision_name_or_path = vision_name_or_path
        self.text_name_or_path = text_name_or_path
        self.tokenizer_name_or_path = tokenizer_name_or_path or text_name_or_path
        self.projection_dim = projection_dim
        self.logit_scale_init_value = float(logit_scale_init_value)
        self.max_logit_scale = float(max_logit_scale)
        self.lock_image_tower = bool(lock_image_tower)
        self.lock_text_tower = bool(lock_text_tower)
        self.max_text_length = max_text_length
        self.gather_distributed = gather_distributed
        check_patch_dropout(patch_dropout, self.vision_config)
        check_unlock("model.unlock_last_layers_image", unlock_last_layers_image, self.lock_image_tower,
                     "model.lock_image_tower", self.vision_config)
        check_unlock("model.unlock_last_layers_text", unlock_last_layers_text, self.lock_text_tower,
                     "model.lock_text_tower", self.text_config)
        self.patch_dropout = float(patch_dropout)
        self.unlock_last_layers_image = unlock_last_layers_image
        self.unlock_last_layers_text = unlock_last_layers_text
        # A config saved before text_pooling existed (it has a transformers_version) was trained with the pooler.
        saved = text_pooling is None and "transformers_version" in kwargs
        self.text_pooling = resolve_text_pooling(text_pooling if not saved else "pooler", self.text_config,
                                                 text_name_or_path)
        self.loss = loss
        self.logit_bias_init_value = float(logit_bias_init_value)
        self.gradient_cache_chunk_size = gradient_cache_chunk_size
        super().__init__(**kwargs)

    @property
    def is_clip_architecture(self) -> bool:
        """Both towers are CLIP's own: the transferable model is a ``CLIPModel``."""
        return (self.vision_config.model_type == "clip_vision_model"
                and self.text_config.model_type == "clip_text_model")


def sentence_transformers_pooling(name_or_path: str) -> str | None:
    """The pooling a sentence-transformers model folder (or Hub id) was trained with: ``"mean"`` or
    ``"cls"`` from the Pooling module's ``config.json`` (named by ``modules.json``, else ``1_Pooling/``);
    ``None`` when the folder is not a sentence-transformers model. Other poolings (max, mean-sqrt-len,
    weighted, last token) are refused: the dual encoder cannot reproduce them."""
    from transformers.utils import cached_file

    def find(filename: str) -> str | None:
        try:
            return cached_file(resolve_pretrained_path(name_or_path), filename,
                               _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False)
        except (OSError, ValueError):
            return None

    folder = "1_Pooling"
    modules = find("modules.json")
    if modules is not None:
        with open(modules, encoding="utf-8") as file:
            entries = json.load(file)
        folder = next((entry.get("path", "") for entry in entries
                       if str(entry.get("type", "")).endswith(".Pooling")), folder)
    pooling_config = find(f"{folder}/config.json") if folder else None
    if pooling_config is None:
        return None
    with open(pooling_config, encoding="utf-8") as file:
        modes = {key[len("pooling_mode_"):] for key, value in json.load(file).items()
                 if key.startswith("pooling_mode_") and value}
    if modes == {"mean_tokens"}:
        return "mean"
    if modes == {"cls_token"}:
        return "cls"
    raise ValueError(f"text_name_or_path={name_or_path!r} is a sentence-transformers model pooled with "
                     f"{sorted(modes)}, which the dual encoder cannot reproduce; set model.text_pooling to one of "
                     f"{TEXT_POOLINGS} explicitly")


def resolve_text_pooling(text_pooling: str | None, text_config: PretrainedConfig, text_name_or_path: str | None) -> str:
    """``model.text_pooling``, checked, or its default (see :class:`HfsslCLIPConfig`)."""
    if text_config.model_type == "clip_text_model":
        if text_pooling not in (None, "pooler"):
            raise ValueError(f"model.text_pooling={text_pooling!r}, but a CLIP text tower (clip_text_model) pools at its "
                             "end-of-text token (its pooler_output), as it was trained; leave model.text_pooling unset "
                             "or set it to 'pooler'")
        return "pooler"
    if text_pooling is None:
        return (sentence_transformers_pooling(text_name_or_path) if text_name_or_path else None) or "pooler"
    if text_pooling not in TEXT_POOLINGS:
        raise ValueError(f"model.text_pooling={text_pooling!r} is not one of {TEXT_POOLINGS}: 'mean' for "
                         "sentence-transformers towers (all-MiniLM-L6-v2), 'pooler' for BERT's trained pooler, 'cls' "
                         "for the [CLS] state without it")
    return text_pooling
