"""What CLIP does to the inside of its towers while it trains: patch dropout and partial unlocking.

**Patch dropout** (FLIP, Li et al. 2023, "Scaling Language-Image Pre-training via Masking", sec. 3;
open_clip's ``PatchDropout``): in training, each image's patch tokens are cut to a random subset of
``keep = max(1, floor(P * (1 - patch_dropout)))`` of its ``P`` patches, after the position embeddings are
added and before the first transformer block; the prefix tokens (CLS, DeiT's distillation token) are
always kept. The encoder's cost falls with the sequence length, so training steps get faster.

The choice: a forward hook on the image tower's ``embeddings`` module (:func:`dropping_patches`), registered
by the hfssl model *only around its own training call of the image tower* and removed right after. The
transformers model keeps its class and weights, and nothing else ever runs with the hook: not the
exported dual encoder, the evaluation protocols, the pictures or a ``deepcopy`` of the backbone (a hook
registered for the model's lifetime would be copied with the module). Which patches survive is the
argument ``noise`` ``(B, P)``: the ``K`` largest values of each row are kept. The input builder draws it
from the step's generator, so a resumed run drops the same patches.

**Partial unlocking** (open_clip's ``lock(unlocked_groups=N)``; LiT, Zhai et al. 2022, when ``N = 0``): in a
locked tower, the last ``N`` transformer layers (ConvNeXt: stages) and every module after them (the final
LayerNorm, the pooler) train; the stem and the earlier layers stay frozen and in inference mode.
:func:`split_tower` finds the layers (``encoder.layer`` of BERT, ``layers`` of ViT / DeiT, ``encoder.layers``
of CLIP's towers, ``encoder.stages`` of ConvNeXt) and the modules before and after them by the order in
which the tower registers its children, which is the order of its forward pass for these encoders.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig

#: Image towers whose ``embeddings`` module returns a token sequence ``(B, prefix + P, D)``, with their
#: number of prefix tokens (kept by patch dropout): ViT's [CLS], DeiT's [CLS] and distillation token, CLIP's.
PATCH_TOKEN_TOWERS = {"vit": 1, "deit": 2, "clip_vision_model": 1}
#: The names of a tower's list of layers (the shallowest ``nn.ModuleList`` so named is the one unlocked).
LAYER_LIST_NAMES = ("layer", "layers", "stages")


# ---------------------------------------------------------------- patch dropout


def check_patch_dropout(patch_dropout: float, vision_config: PretrainedConfig) -> None:
    """Raise ``ValueError`` naming ``model.patch_dropout`` for a ratio outside ``[0, 1)`` or an image tower
    without patch tokens."""
    if isinstance(patch_dropout, bool) or not isinstance(patch_dropout, (int, float)) or not 0 <= patch_dropout < 1:
        raise ValueError(f"model.patch_dropout must be a fraction of the patch tokens in [0, 1) (0 = off), got "
                         f"{patch_dropout!r}")
    model_type = vision_config.model_type
    if patch_dropout > 0 and model_type not in PATCH_TOKEN_TOWERS:
        kind = ("a convolutional network: it has no patch tokens to drop"
                if "conv" in model_type or model_type in ("resnet", "regnet") else "not a supported ViT-like tower")
        raise ValueError(f"model.patch_dropout={patch_dropout} needs a token-based ViT-like image tower "
                         f"({', '.join(PATCH_TOKEN_TOWERS)}); the image tower is {model_type!r}, {kind}. Set "
                         "model.patch_dropout=0, or use a ViT, DeiT or CLIP vision tower")


def num_patches(vision_config: PretrainedConfig, height: int, width: int) -> int:
    """The number of patch tokens ``P`` of a ``height x width`` image in a ViT-like tower."""
    patch = vision_config.patch_size
    patch_height, patch_width = (patch, patch) if isinstance(patch, int) else tuple(patch)
    return (height // patch_height) * (width // patch_width)


def kept_patches(total: int, patch_dropout: float) -> int:
    """``K = max(1, floor(P * (1 - patch_dropout)))`` (open_clip's rule), robust to float rounding
    (``P = 10, 0.7`` keeps 3, not 2)."""
    return max(1, math.floor(total * (1 - patch_dropout) + 1e-6))


def keep_patch_tokens(tokens: torch.Tensor, noise: torch.Tensor, num_prefix_tokens: int, keep: int) -> torch.Tensor:
    """The prefix tokens and, of each row's patch tokens, the ``keep`` whose ``noise`` is largest.

    Shapes: ``tokens (B, prefix + P, D)``, ``noise (B, P)`` -> ``(B, prefix + keep, D)``.
    """
    batch, length, width = tokens.shape
    if noise.shape != (batch, length - num_prefix_tokens):
        raise ValueError(f"patch dropout noise of shape {tuple(noise.shape)} does not fit {batch} images of "
                         f"{length - num_prefix_tokens} patch tokens (plus {num_prefix_tokens} prefix tokens)")
    index = noise.to(tokens.device).topk(keep, dim=1).indices  # (B, K)
    patches = tokens[:, num_prefix_tokens:].gather(1, index.unsqueeze(-1).expand(-1, -1, width))  # (B, K, D)
    return torch.cat([tokens[:, :num_prefix_tokens], patches], dim=1)


def find_embeddings(tower: nn.Module) -> nn.Module:
    """The tower's ``embeddings`` module (the shallowest one: ``ViTModel.embeddings``, ``CLIPVisionModel``'s)."""
    found = [(name.count("."), name) for name, _ in tower.named_modules() if name.split(".")[-1] == "embeddings"]
    if not found:
        raise ValueError(f"model.patch_dropout: the image tower {type(tower).__name__} has no 'embeddings' module "
                         "whose output could be cut; set model.patch_dropout=0")
    return tower.get_submodule(min(found)[1])


@contextmanager
def dropping_patches(tower: nn.Module, noise: torch.Tensor, num_prefix_tokens: int,
                     patch_dropout: float) -> Iterator[None]:
    """Within the block, the output ``(B, prefix + P, D)`` of ``tower``'s embeddings is cut to
    ``(B, prefix + K, D)`` (:func:`keep_patch_tokens`, ``K`` from :func:`kept_patches`); the hook is removed on exit."""

    def hook(module: nn.Module, args: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor) or output.ndim != 3:
            raise ValueError(f"model.patch_dropout: {type(module).__name__} returned {type(output).__name__}, not "
                             "a (batch, tokens, width) tensor; set model.patch_dropout=0 for this tower")
        return keep_patch_tokens(output, noise, num_prefix_tokens,
                                 kept_patches(output.shape[1] - num_prefix_tokens, patch_dropout))

    handle = find_embeddings(tower).register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


# ---------------------------------------------------------------- partial unlocking


def tower_depth(tower_config: PretrainedConfig) -> int:
    """The number of layers (transformers) or stages (ConvNeXt: ``len(depths)``) of a tower's config."""
    depths = getattr(tower_config, "depths", None)
    if isinstance(depths, (list, tuple)):
        return len(depths)
    return int(tower_config.num_hidden_layers)


def check_unlock(key: str, count: int, locked: bool, lock_key: str, tower_config: PretrainedConfig | None) -> None:
    """Raise ``ValueError`` naming ``key`` unless ``count`` is an int in ``[0, depth]`` and, when positive, the
    tower is locked (``lock_key``). ``tower_config=None`` skips the depth (a pretrained tower not read yet)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"{key} must be a whole number of layers >= 0 (0 = the whole locked tower frozen, LiT), "
                         f"got {count!r}")
    if count and not locked:
        raise ValueError(f"{key}={count} unlocks the last layers of a locked tower, but {lock_key} is false (the "
                         f"whole tower trains already); set {lock_key}=true, or {key}=0")
    if count and tower_config is not None and count > tower_depth(tower_config):
        raise ValueError(f"{key}={count} but the tower ({tower_config.model_type}) has {tower_depth(tower_config)} "
                         f"layers / stages; give at most {tower_depth(tower_config)} (that many unlocks every "
                         f"layer, the embeddings stay frozen) or set {lock_key}=false")


def find_layers(tower: nn.Module, key: str) -> str:
    """The name of the tower's list of layers: the shallowest ``nn.ModuleList`` named ``layer``, ``layers`` or
    ``stages`` (``encoder.layer``, ``layers``, ``encoder.layers``, ``encoder.stages``)."""
    found = [(name.count("."), name) for name, module in tower.named_modules()
             if isinstance(module, nn.ModuleList) and name.split(".")[-1] in LAYER_LIST_NAMES]
    if not found:
        raise ValueError(f"{key}: the tower {type(tower).__name__} has no list of layers (encoder.layer, "
                         "encoder.layers, encoder.stages or layers) to unlock; unlocking supports BERT-like, ViT, DeiT, "
                         f"CLIP and ConvNeXt towers: set {key}=0")
    depth = min(found)[0]
    names = [name for level, name in found if level == depth]
    if len(names) > 1:
        raise ValueError(f"{key}: the tower {type(tower).__name__} has several lists of layers ({names}); which "
                         f"to unlock is ambiguous: set {key}=0")
    return names[0]


def split_tower(tower: nn.Module, key: str) -> tuple[list[nn.Module], nn.ModuleList, list[nn.Module]]:
    """``(before, layers, after)``: the modules that run before the layer list (embeddings, CLIP's
    ``pre_layrnorm``), the list, and those after it (final LayerNorm, pooler), found by the registration order
    of the children along the path from ``tower`` to the list. Parameters held directly by a module on that
    path (none in transformers' encoders) count as before."""
    path = find_layers(tower, key)
    before: list[nn.Module] = []
    after: list[nn.Module] = []
    parent = tower
    for part in path.split("."):
        passed = False
        for name, child in parent.named_children():
            if name == part:
                passed = True
            else:
                (after if passed else before).append(child)
        parent = getattr(parent, part)
    return before, parent, after


def unlocked_modules(tower: nn.Module, count: int, key: str) -> list[nn.Module]:
    """The last ``count`` layers of ``tower`` and the modules after them (none when ``count = 0``)."""
    if count == 0:
        return []
    _, layers, after = split_tower(tower, key)
    if count > len(layers):
        raise ValueError(f"{key}={count} but the {type(tower).__name__} has {len(layers)} layers / stages; give at "
                         f"most {len(layers)}")
    return [*layers[len(layers) - count:], *after]


__all__ = ["PATCH_TOKEN_TOWERS", "check_patch_dropout", "check_unlock", "dropping_patches", "keep_patch_tokens",
           "kept_patches", "num_patches", "split_tower", "tower_depth", "unlocked_modules"]
