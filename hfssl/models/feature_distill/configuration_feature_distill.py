"""Feature distillation configuration: a student encoder regresses a frozen teacher encoder's features."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

from hfssl.backbones import resolve_pretrained_path
from hfssl.configuration_utils import HfsslVisionConfig, check_range
from hfssl.losses.distillation import FEATURE_LOSSES


def teacher_config_from(config_dict: dict[str, Any]) -> PretrainedConfig:
    """The teacher's transformers config from its dict (``model_type`` and the architecture's keys)."""
    values = dict(config_dict)
    model_type = values.pop("model_type")
    values.pop("architectures", None)
    return AutoConfig.for_model(model_type, **values)


class FeatureDistillConfig(HfsslVisionConfig):
    """Configuration of :class:`FeatureDistillForPreTraining`.

    The teacher is referenced, not stored: ``teacher_name_or_path`` says where its weights are loaded from when a
    run starts or resumes (a transformers vision encoder folder, a Hub id, an hfssl run's ``encoder/`` or the run
    folder itself, ``builtin:<name>``), and ``teacher_config`` (read from there when not given) rebuilds its
    architecture, so ``from_pretrained`` of the full model works without the teacher's weights.

    Args:
        backbone_config / backbone_name_or_path / pooling: the student encoder (see :class:`HfsslVisionConfig`).
        teacher_name_or_path: where the teacher's weights are.
        teacher_config: the teacher's config as a dict (``model_type`` + its keys).
        teacher_pooling: how the teacher's outputs are pooled (``auto``, ``cls``, ``mean``, ``pooler``).
        loss: ``cosine`` (1 - cosine similarity) or ``smooth_l1`` between projection and teacher features.
        smooth_l1_beta: the smooth-l1 threshold.
        projection_hidden_dim / projection_num_layers: the MLP from the student's features to the teacher's width.
    """

    model_type = "hfssl_feature_distill"
    default_backbone = "resnet18"

    def __init__(
        self,
        backbone_config: PretrainedConfig | dict[str, Any] | str | None = None,
        backbone_name_or_path: str | None = None,
        pooling: str = "auto",
        teacher_name_or_path: str | None = None,
        teacher_config: dict[str, Any] | None = None,
        teacher_pooling: str = "auto",
        loss: str = "cosine",
        smooth_l1_beta: float = 1.0,
        projection_hidden_dim: int = 2048,
        projection_num_layers: int = 2,
        **kwargs: Any,
    ) -> None:
        if loss not in FEATURE_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(FEATURE_LOSSES)}, got {loss!r}")
        if teacher_pooling not in ("auto", "cls", "mean", "pooler"):
            raise ValueError(f"teacher_pooling must be one of auto, cls, mean, pooler; got {teacher_pooling!r}")
        check_range("smooth_l1_beta", smooth_l1_beta, 0.0, 1e6, low_open=True)
        check_range("projection_num_layers", projection_num_layers, 1, 8)
        check_range("projection_hidden_dim", projection_hidden_dim, 1, 1 << 16)
        if teacher_config is None and teacher_name_or_path is not None:
            teacher_config = AutoConfig.from_pretrained(teacher_encoder_path(teacher_name_or_path)).to_dict()
        if isinstance(teacher_config, PretrainedConfig):
            teacher_config = teacher_config.to_dict()
        if teacher_config is not None:
            if "model_type" not in teacher_config:
                raise ValueError("teacher_config needs a model_type (the teacher encoder's config.json as a dict)")
            teacher_config = {key: value for key, value in teacher_config.items() if key not in
                              ("transformers_version", "architectures", "dtype", "torch_dtype", "_name_or_path")}
        self.teacher_name_or_path = teacher_name_or_path
        #: ``None`` only in a bare config (``AutoConfig.for_model``): the model refuses to be built without one.
        self.teacher_config = teacher_config
        self.teacher_pooling = teacher_pooling
        self.loss = loss
        self.smooth_l1_beta = smooth_l1_beta
        self.projection_hidden_dim = projection_hidden_dim
        self.projection_num_layers = projection_num_layers
        super().__init__(backbone_config, backbone_name_or_path, pooling, **kwargs)


def teacher_encoder_path(name_or_path: str) -> str:
    """``builtin:<name>`` resolved; an hfssl run folder (``config.json`` of an hfssl model beside ``encoder/``)
    turned into its ``encoder/``; folders and Hub ids as given."""
    from pathlib import Path

    resolved = resolve_pretrained_path(name_or_path)
    folder = Path(resolved)
    if (folder / "encoder" / "config.json").is_file() and (folder / "config.json").is_file():
        return str(folder / "encoder")
    return resolved
