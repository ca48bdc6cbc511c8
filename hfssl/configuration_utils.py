"""Shared configuration for image methods whose transferable part is a transformers vision encoder."""

from __future__ import annotations

import inspect
import numbers
from typing import Any

from transformers import AutoConfig, PretrainedConfig

from hfssl.backbones import min_input_size, resolve_backbone_config


class HfsslVisionConfig(PretrainedConfig):
    """Base of the image methods' configs: which backbone, and how its features are pooled.

    Args:
        backbone_config: a transformers config, a dict with ``model_type``, or a preset name from
            :data:`hfssl.backbones.BACKBONE_PRESETS`. Defaults to the method paper's backbone.
        backbone_name_or_path: local folder or Hub id whose pretrained weights initialise the
            backbone at the start of training (recorded as ``base_model`` in the model card).
        pooling: ``auto``, ``cls`` or ``mean`` (see :func:`hfssl.backbones.pool_features`).
    """

    sub_configs = {"backbone_config": AutoConfig}
    default_backbone = "resnet50"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        **kwargs: Any,
    ) -> None:
        if pooling not in ("auto", "cls", "mean", "pooler"):
            raise ValueError(f"pooling must be one of auto, cls, mean, pooler; got {pooling!r}")
        if backbone_name_or_path is not None and backbone_config is None:
            # Resolved from the path by hfssl.registry.build_model when training starts.
            backbone_config = AutoConfig.from_pretrained(backbone_name_or_path)
        self.backbone_config = resolve_backbone_config(backbone_config, self.default_backbone)
        self.backbone_name_or_path = backbone_name_or_path
        self.pooling = pooling
        super().__init__(**kwargs)


def check_range(name: str, value: float, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> None:
    """Raise ``ValueError`` naming the config key, the bad value and the allowed range (a boolean or
    a string is not a number here: ``queue_size=True`` would otherwise pass as 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}")


def set_vocab_size(model_config: PretrainedConfig, vocab_size: int | None, given_config: Any,
                   backbone_name_or_path: str | None, default: int) -> None:
    """Set a text model's vocabulary size on ``model_config`` (built from ``given_config`` or the checkpoint
    ``backbone_name_or_path``): ``model.vocab_size`` when set (a trained tokenizer's real size is written back
    through it), else ``default`` for a preset config; a checkpoint keeps its own embeddings' size.

    Raises ``ValueError`` when ``vocab_size`` is below 8, or differs from a checkpoint's embeddings (the
    tokenizer and the model would not match).
    """
    if vocab_size is not None and vocab_size < 8:
        raise ValueError(f"model.vocab_size must be at least 8, got {vocab_size!r}")
    from_checkpoint = backbone_name_or_path is not None and given_config is None
    if vocab_size is not None:
        if from_checkpoint and vocab_size != model_config.vocab_size:
            raise ValueError(f"model.vocab_size {vocab_size} differs from the {model_config.vocab_size} embeddings of "
                             f"{backbone_name_or_path!r}: the tokenizer and the model would not match; unset model.vocab_size")
        model_config.vocab_size = vocab_size
    elif not from_checkpoint and not isinstance(given_config, (dict, PretrainedConfig)):
        model_config.vocab_size = default


def recipe_config_values(config_class: type[HfsslVisionConfig], model: dict[str, Any]) -> dict[str, Any]:
    """A recipe's ``model`` section over the config's defaults (the keyword defaults of its ``__init__``),
    for checks made when the recipe is loaded, before any config is built."""
    parameters = inspect.signature(config_class.__init__).parameters
    defaults = {name: parameter.default for name, parameter in parameters.items()
                if parameter.default is not inspect.Parameter.empty}
    return {**defaults, **model}


def recipe_min_input_size(config_class: type[HfsslVisionConfig], model: dict[str, Any]) -> int:
    """:func:`hfssl.backbones.min_input_size` of the backbone a recipe's ``model`` section names (1 when
    only ``backbone_name_or_path`` names it: its config is read when training starts)."""
    values = recipe_config_values(config_class, model)
    if values.get("backbone_config") is None and values.get("backbone_name_or_path"):
        return 1
    return min_input_size(resolve_backbone_config(values.get("backbone_config"), config_class.default_backbone))
