"""CLIP / LiT pre-training: two towers, projections into one space, a learned temperature, CLIPLoss or SigLIPLoss.

The transferable part (``self.backbone``) *is* a transformers dual encoder, built once from the two
tower configs: a ``CLIPModel`` when both towers are CLIP's own, else a ``VisionTextDualEncoderModel``
(any vision encoder whose ``pooler_output`` is ``(B, hidden)`` + any text encoder). Its projections
and ``logit_scale`` are the method's parameters, so export writes the model as it is and
``pipeline("zero-shot-image-classification")`` computes exactly the trained similarities.

The text projection takes the text tower's tokens pooled as ``config.text_pooling`` says: the tower's
``pooler_output`` (transformers' default), or, for sentence-transformers towers (all-MiniLM-L6-v2, which
was trained with mean pooling and whose BERT pooler never was), the attention-masked mean (or the
``[CLS]`` state): then the dual encoder is a :class:`PooledVisionTextDualEncoderModel`
(``modeling_pooled_dual_encoder.py``, a self-contained subclass that the export carries as remote code).

Locked towers (LiT, Zhai et al. 2022): a locked tower gets no gradients and stays in inference
mode (no dropout) also while the model trains; its projection is trained. ``unlock_last_layers_*`` trains
the last layers of a locked tower, and ``patch_dropout`` drops patch tokens of a ViT image tower in
training only (both in :mod:`hfssl.models.clip.towers`, which says how).

SigLIP (``config.loss == "siglip"``, Zhai et al. 2023): the pairwise sigmoid loss with the dual encoder's
``logit_scale`` and a learned bias ``self.logit_bias`` (a parameter of this model only: the exported dual
encoder has no bias, which shifts every logit alike and so changes no softmax or ranking).

Gradient cache (``config.gradient_cache_chunk_size``, training only): each tower with trainable
parameters embeds the batch through :func:`hfssl.losses.gradient_cache.cached_embeddings` (chunks without
activations, the loss on the whole batch, each chunk again in the engine's backward); a tower with none
(locked) runs once, as its frozen layers keep no activations, and only its projection gets gradients.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import (CLIPConfig, CLIPModel, PreTrainedModel, VisionTextDualEncoderConfig,
                          VisionTextDualEncoderModel)
from transformers.utils import ModelOutput

from hfssl.backbones import load_tower_state, pool_tower_features, resolve_pretrained_path, tower_layer_features
from hfssl.losses import CLIPLoss, SigLIPLoss
from hfssl.losses.gradient_cache import cached_embeddings
from hfssl.modeling_utils import HfsslPreTrainedModel, ParameterGroup
from hfssl.models.clip.configuration_clip import HfsslCLIPConfig
from hfssl.models.clip.tower_sources import TEXT, VISION, load_tower
from hfssl.models.clip.towers import PATCH_TOKEN_TOWERS, dropping_patches, num_patches, unlocked_modules
from hfssl.models.clip.modeling_pooled_dual_encoder import (PooledVisionTextDualEncoderConfig,
                                                             PooledVisionTextDualEncoderModel)

logger = logging.getLogger(__name__)


@dataclass
class HfsslCLIPOutput(ModelOutput):
    """Args:
    loss: symmetric image-text cross entropy (CLIP) or pairwise sigmoid loss (SigLIP) of the (global) batch.
    logit_scale: the clipped ``exp(t)`` the loss used.
    logit_bias: SigLIP's learned bias ``b`` (``None`` for CLIP).
    image_embeds / text_embeds: projected, L2-normalised embeddings ``(B, projection_dim)``.
    """

    loss: torch.FloatTensor | None = None
    logit_scale: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    logit_bias: torch.FloatTensor | None = None


def build_dual_encoder(config: HfsslCLIPConfig) -> PreTrainedModel:
    """The transformers dual encoder of ``config`` (randomly initialised towers)."""
    if config.is_clip_architecture:
        clip_config = CLIPConfig(text_config=config.text_config.to_dict(), vision_config=config.vision_config.to_dict(),
                                 projection_dim=config.projection_dim,
                                 logit_scale_init_value=config.logit_scale_init_value)
        return CLIPModel(clip_config)
    if config.text_pooling != "pooler":  # mean / cls pooling of the text tower's tokens
        pooled_config = PooledVisionTextDualEncoderConfig.from_vision_text_configs(
            config.vision_config, config.text_config, projection_dim=config.projection_dim,
            logit_scale_init_value=config.logit_scale_init_value, text_pooling=config.text_pooling)
        return PooledVisionTextDualEncoderModel(pooled_config)
    dual_config = VisionTextDualEncoderConfig.from_vision_text_configs(
        config.vision_config, config.text_config, projection_dim=config.projection_dim,
        logit_scale_init_value=config.logit_scale_init_value)
    return VisionTextDualEncoderModel(dual_config)


def projected(output: Any) -> torch.Tensor:
    """``get_image_features`` / ``get_text_features`` return a tensor or, in transformers v5, an output
    whose ``pooler_output`` holds the projection."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class HfsslCLIPForPreTraining(HfsslPreTrainedModel):
    """CLIP (Radford et al. 2021) with optionally locked towers (LiT, Zhai et al. 2022) around a
    transformers dual encoder; see the module docstring."""

    config_class = HfsslCLIPConfig

    def __init__(self, config: HfsslCLIPConfig) -> None:
        super().__init__(config)
        self.backbone = build_dual_encoder(config)
        if config.loss == "siglip":
            self.criterion = SigLIPLoss(config.gather_distributed)
            # SigLIP's bias b (sec. 3.1); the dual encoder has no slot for it, so it lives here (0-d, as
            # ``logit_scale``) and is saved and resumed with the full model, not exported.
            self.logit_bias = nn.Parameter(torch.tensor(config.logit_bias_init_value))
        else:
            self.criterion = CLIPLoss(config.gather_distributed)
            self.logit_bias = None
        self.post_init()
        # post_init may re-initialise parameters; the temperature and bias start where the config says.
        with torch.no_grad():
            self.backbone.logit_scale.fill_(config.logit_scale_init_value)
            if self.logit_bias is not None:
                self.logit_bias.fill_(config.logit_bias_init_value)
        self.apply_locks()

    # ---- towers --------------------------------------------------------------------------------

    def locked_towers(self) -> list[nn.Module]:
        towers = []
        if self.config.lock_image_tower:
            towers.append(self.backbone.vision_model)
        if self.config.lock_text_tower:
            towers.append(self.backbone.text_model)
        return towers

    def unlocked_modules(self) -> list[nn.Module]:
        """The modules of the locked towers that train (``unlock_last_layers_image`` / ``_text``): each tower's
        last N layers / stages and the modules after them (:func:`hfssl.models.clip.towers.unlocked_modules`)."""
        return [*unlocked_modules(self.backbone.vision_model, self.config.unlock_last_layers_image,
                                  "model.unlock_last_layers_image"),
                *unlocked_modules(self.backbone.text_model, self.config.unlock_last_layers_text,
                                  "model.unlock_last_layers_text")]

    def apply_locks(self) -> None:
        """Locked towers get no gradients (the engine gives the optimiser only trainable parameters), except
        their unlocked last layers."""
        for tower in self.locked_towers():
            tower.requires_grad_(False)
            tower.eval()
        for module in self.unlocked_modules():
            module.requires_grad_(True)
            module.train(self.training)

    def train(self, mode: bool = True) -> HfsslCLIPForPreTraining:
        super().train(mode)
        for tower in self.locked_towers():
            tower.eval()  # LiT: a locked tower runs in inference mode (no dropout, fixed statistics)
        for module in self.unlocked_modules():
            module.train(mode)  # its unlocked last layers train as the rest of the model does
        return self

    @classmethod
    def from_pretrained(cls, *args: Any, **kwargs: Any) -> HfsslCLIPForPreTraining:
        """As ``PreTrainedModel.from_pretrained``, with the locks applied again: transformers materialises the
        loaded parameters with ``requires_grad=True``, which would unlock a locked tower."""
        loaded = super().from_pretrained(*args, **kwargs)
        (loaded[0] if isinstance(loaded, tuple) else loaded).apply_locks()  # a tuple with output_loading_info=True
        return loaded

    def parameter_groups(self) -> list[ParameterGroup]:
        """``unlocked_layers``: the parameters of the locked towers' unlocked layers, at ``optim.lr`` unless the
        recipe sets ``optim.parameter_groups.unlocked_layers.lr_scale`` (pretrained layers often want less)."""
        unlocked = {id(parameter) for module in self.unlocked_modules() for parameter in module.parameters()}
        if not unlocked:
            return []
        names = tuple(name for name, parameter in self.named_parameters() if id(parameter) in unlocked)
        return [ParameterGroup("unlocked_layers", names)]

    @torch.no_grad()
    def load_pretrained_weights(self) -> list[str]:
        """Copy the weights of ``vision_name_or_path`` / ``text_name_or_path`` into the towers (called by
        the engine when a run starts); returns what was loaded."""
        loaded = []
        for path, name, tower in ((self.config.vision_name_or_path, VISION, self.backbone.vision_model),
                                  (self.config.text_name_or_path, TEXT, self.backbone.text_model)):
            if not path:
                continue
            # An encoder folder, an hfssl run or a CLIP-like checkpoint's tower (hfssl.models.clip.tower_sources).
            pretrained, source = load_tower(path, name)
            missing = load_tower_state(tower, pretrained, f"the pretrained tower {source.describe()}")
            if missing:
                logger.warning("%s has no %s; those weights keep their random initialisation", path, missing)
            loaded.append(path)
        self.apply_locks()
        return loaded

    # ---- embeddings ------------------------------------------------------------------------------

    def get_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The image tower's pooled features ``(B, hidden)``, before the projection (the ``image-features``
        capability, what knn / linear score): a CLIP or SigLIP tower's ``pooler_output`` (CLIP's [CLS] after
        its final LayerNorm, SigLIP's attention pooling), any other tower pooled as the same encoder is alone
        (a ViT's [CLS] token, a ConvNeXt's pooled output; :func:`hfssl.backbones.pool_tower_features`), so
        a LiT model's locked tower scores as the SSL encoder it came from."""
        outputs = self.backbone.vision_model(pixel_values=pixel_values)
        return pool_tower_features(outputs, self.config.vision_config.model_type)

    def get_layer_embeddings(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Every block / stage of the image tower pooled, ``[(B, width_i)]``, the last equal to
        :meth:`get_embeddings` (the ``layer-features`` capability; :func:`hfssl.backbones.tower_layer_features`)."""
        return tower_layer_features(self.backbone.vision_model, pixel_values, self.config.vision_config.model_type)

    def get_image_features(self, pixel_values: torch.Tensor,
                           patch_dropout_noise: torch.Tensor | None = None) -> torch.Tensor:
        """Projected image embeddings ``(B, projection_dim)`` (not normalised).

        ``patch_dropout_noise`` ``(B, P)``: when given, the image tower sees only the prefix tokens and the
        ``max(1, floor(P * (1 - model.patch_dropout)))`` patches of largest noise (``forward`` passes it in
        training only); without it, or with ``patch_dropout = 0``, every patch.
        """
        if patch_dropout_noise is None or self.config.patch_dropout == 0:
            return projected(self.backbone.get_image_features(pixel_values=pixel_values))
        prefix = PATCH_TOKEN_TOWERS[self.config.vision_config.model_type]
        with dropping_patches(self.backbone.vision_model, patch_dropout_noise, prefix, self.config.patch_dropout):
            return projected(self.backbone.get_image_features(pixel_values=pixel_values))

    def training_patch_noise(self, pixel_values: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor | None:
        """The patch-dropout noise ``(B, P)`` of a forward pass: ``None`` (every patch) unless the model trains
        with ``patch_dropout > 0``; then the input builder's ``noise`` (drawn from the step's generator), or one
        drawn from torch's global generator when a caller gives none."""
        if not (self.training and self.config.patch_dropout > 0):
            return None
        if noise is None:
            patches = num_patches(self.config.vision_config, *pixel_values.shape[-2:])
            noise = torch.rand(pixel_values.shape[0], patches, device=pixel_values.device)
        return noise

    def get_text_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                            **kwargs: Any) -> torch.Tensor:
        """The text tower's pooled output ``(B, hidden)`` before the projection, pooled as
        ``config.text_pooling`` says (``"mean"``: a sentence-transformers sentence embedding)."""
        if isinstance(self.backbone, PooledVisionTextDualEncoderModel):
            return self.backbone.get_pooled_text_output(input_ids, attention_mask, **kwargs).pooler_output
        return self.backbone.text_model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).pooler_output

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                          **kwargs: Any) -> torch.Tensor:
        """Projected text embeddings ``(B, projection_dim)`` (not normalised), of the tokens pooled as
        ``config.text_pooling`` says."""
        return projected(self.backbone.get_text_features(input_ids=input_ids, attention_mask=attention_mask, **kwargs))

    def clipped_logit_scale(self) -> torch.Tensor:
        """``exp(t)`` with ``t`` clipped to ``[0, log(max_logit_scale)]`` (CLIP sec. 2.5; the official
        code and open_clip clamp ``t`` to ``[0, ln 100]``: the scale never falls below 1)."""
        return self.backbone.logit_scale.clamp(min=0.0, max=math.log(self.config.max_logit_scale)).exp()

    def get_dual_encoder(self, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                         channels: int) -> tuple[PreTrainedModel, Any]:
        """The ``image-text-embeddings`` capability: the transferable dual encoder and its processor, as
        ``DIR/encoder`` holds them (see :func:`transferable_dual_encoder`)."""
        return transferable_dual_encoder(self, image_size, mean, std, channels)

    @torch.no_grad()
    def on_train_step_end(self, step: int, scheduled: dict[str, float]) -> None:
        # Clip the parameter itself (as open_clip does after each step), so the exported model's
        # logits use the same scale as training.
        self.backbone.logit_scale.clamp_(min=0.0, max=math.log(self.config.max_logit_scale))

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, return_dict: bool | None = None,
                patch_dropout_noise: torch.Tensor | None = None, **kwargs: Any) -> HfsslCLIPOutput:
        """Args:
        pixel_values: images ``(B, C, H, W)``; input_ids / attention_mask: their captions ``(B, T)``.
        patch_dropout_noise: ``(B, P)`` uniform noise choosing the patches kept in training when
            ``model.patch_dropout > 0`` (:class:`hfssl.models.clip.CaptionInputs` draws it); ignored in eval mode.
        """
        if pixel_values.shape[0] != input_ids.shape[0]:
            raise ValueError(f"{pixel_values.shape[0]} images but {input_ids.shape[0]} captions: each image needs "
                             "exactly one caption")
        texts = {"input_ids": input_ids}
        texts.update({name: value for name, value in (("attention_mask", attention_mask),
                                                      ("token_type_ids", token_type_ids)) if value is not None})
        images = {"pixel_values": pixel_values}
        noise = self.training_patch_noise(pixel_values, patch_dropout_noise)
        if noise is not None:
            images["patch_dropout_noise"] = noise  # rows: a cached chunk recomputes the same patches
        image_embeds = self.embed_tower(lambda rows: self.get_image_features(**rows), images,
                                        self.backbone.vision_model, self.backbone.visual_projection)
        text_embeds = self.embed_tower(lambda rows: self.get_text_features(**rows), texts, self.backbone.text_model,
                                       self.backbone.text_projection)
        scale = self.clipped_logit_scale()
        if self.logit_bias is not None:
            loss = self.criterion(image_embeds, text_embeds, scale, self.logit_bias)
        else:
            loss = self.criterion(image_embeds, text_embeds, scale)
        return HfsslCLIPOutput(loss=loss, logit_scale=scale.detach(),
                               image_embeds=nn.functional.normalize(image_embeds.detach(), dim=1),
                               text_embeds=nn.functional.normalize(text_embeds.detach(), dim=1),
                               logit_bias=None if self.logit_bias is None else self.logit_bias.detach())

    def embed_tower(self, encode: Callable[[dict[str, torch.Tensor]], torch.Tensor], inputs: dict[str, torch.Tensor],
                    tower: nn.Module, projection: nn.Module) -> torch.Tensor:
        """``encode(inputs)`` (projected embeddings ``(B, projection_dim)``), through the gradient cache in
        chunks of ``config.gradient_cache_chunk_size`` pairs when training and ``tower`` has trainable
        parameters. A tower with none (locked) is run once: its frozen layers keep no activations, so
        there is nothing to save by recomputing it, and its projection is trained as usual."""
        chunk_size = self.config.gradient_cache_chunk_size if self.training else None
        if chunk_size is None or not any(parameter.requires_grad for parameter in tower.parameters()):
            return encode(inputs)
        return cached_embeddings(encode, inputs, chunk_size, [*tower.parameters(), *projection.parameters()])


def image_processor_for(config: HfsslCLIPConfig, image_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    """The exported image processor: hfssl's evaluation transform (:func:`hfssl.export.build_image_processor`:
    shorter side to ``image_size``, centre crop, normalise), for CLIP towers and every other pair alike."""
    from hfssl.export import build_image_processor

    return build_image_processor(image_size, tuple(mean), tuple(std), 3)


def load_tokenizer(config: HfsslCLIPConfig) -> Any:
    """The captions' tokenizer (``config.tokenizer_name_or_path``), its length capped at the text tower's."""
    from transformers import AutoTokenizer

    if not config.tokenizer_name_or_path:
        raise ValueError("model.tokenizer_name_or_path is not set: a text tower built from a config needs a tokenizer "
                         "(a folder, Hub id or builtin:all-MiniLM-L6-v2)")
    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained_path(config.tokenizer_name_or_path))
    vocab_size = getattr(config.text_config, "vocab_size", None)
    if vocab_size is not None and len(tokenizer) > vocab_size:
        raise ValueError(f"the tokenizer {config.tokenizer_name_or_path!r} has {len(tokenizer)} tokens but the text "
                         f"tower's vocab_size is {vocab_size}; set model.text_config.vocab_size to at least "
                         f"{len(tokenizer)}")
    positions = getattr(config.text_config, "max_position_embeddings", None)
    tokenizer.model_max_length = min(config.max_text_length, positions or config.max_text_length)
    return tokenizer


def transferable_dual_encoder(model: HfsslCLIPForPreTraining, image_size: int, mean: tuple[float, ...],
                              std: tuple[float, ...], channels: int) -> tuple[PreTrainedModel, Any]:
    """The exported dual encoder and its processor (what ``DIR/encoder`` holds), in memory.

    Grey runs (``channels == 1``) get an image tower that takes RGB and computes the grey model on
    its luma (:func:`hfssl.export.grey_to_rgb_backbone`), and the mean/std repeated three times.
    """
    import copy

    from transformers import CLIPProcessor, VisionTextDualEncoderProcessor

    from hfssl.export import grey_to_rgb_backbone

    dual = copy.deepcopy(model.backbone).eval()
    if channels == 1:
        dual.vision_model = grey_to_rgb_backbone(dual.vision_model)
        dual.config.vision_config.num_channels = 3
        mean, std = tuple(mean) * 3, tuple(std) * 3
    dual.requires_grad_(False)
    image_processor = image_processor_for(model.config, image_size, mean, std)
    tokenizer = load_tokenizer(model.config)
    processor_class = CLIPProcessor if model.config.is_clip_architecture else VisionTextDualEncoderProcessor
    return dual, processor_class(image_processor=image_processor, tokenizer=tokenizer)
