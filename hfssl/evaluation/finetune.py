"""Fine-tuning protocol: an image encoder plus a classification head, every parameter trained.

The second downstream protocol of the seeds (SimCLR sec. B.6 / BYOL sec. C.2 "fine-tuning", MAE sec.
4 end-to-end fine-tuning, SimCLRv2's 1 % / 10 % label fractions). The encoder (an exported hfssl
encoder or any transformers vision model folder / Hub id with an image processor) is loaded into
transformers' own ``AutoModelForImageClassification`` class for its architecture
(``ResNetForImageClassification``, ``ViTForImageClassification``, ``ConvNextForImageClassification``,
...) with ``num_labels`` / ``id2label`` from the labelled data, and trained with the one engine
(:func:`hfssl.training.trainer.train`: Accelerate, mixed precision, the learning-rate schedule,
checkpoints and exact resume). The result is that plain transformers model with the encoder's image
processor, saved to ``OUTPUT/model``: ``pipeline("image-classification", model=OUTPUT/model)`` loads it
without hfssl.

* The training-time shell :class:`FineTuneForImageClassification` holds the transformers classifier
  and computes cross-entropy (optionally label-smoothed, MAE uses 0.1). It is not a registered SSL
  method: the protocol hands its :data:`FINETUNE_SPEC` to ``train(spec=...)``.
  :func:`unregistered_method` and :func:`train_shell` serve the other classifier protocols the same way
  (:mod:`hfssl.evaluation.distill`, :mod:`hfssl.evaluation.semi_supervised`), as do the parts that read
  the encoder's processor, build the training inputs, score the test split and guard the output folder.
* Layer-wise learning-rate decay (BEiT / MAE fine-tuning, Bao et al. 2022 / He et al. 2022 sec. A.2):
  with ``layer_decay = d < 1`` the parameters of block ``i`` of ``L`` (ViT encoder layers; ResNet and
  ConvNeXt stages) learn at ``lr * d ** (L + 1 - i)``, the embeddings (block 0) at ``lr * d ** (L + 1)``,
  the head and final norm at ``lr``.
* Training views: a random resized crop and a horizontal flip on the device (MAE's fine-tuning
  views without RandAugment / mixup), normalised with the image processor's mean and std. Test images
  go through the same deterministic transform as feature extraction.
* Label fractions: the training split is reduced to a class-balanced seeded subset
  (:func:`hfssl.evaluation.subsets.balanced_subset`) before training.
* Partial fine-tuning (``freeze_stages: N``): the stem / embeddings and the first ``N`` stages (ResNet,
  ConvNeXt) or blocks (ViT) keep their pre-trained weights: ``requires_grad`` is off (the engine's
  optimizer never sees them) and their modules stay in eval mode, so BatchNorm running statistics do not
  move either; the later stages, the final norm and the head train. ``N`` larger than the encoder's number
  of stages is refused before training, naming the count. The seeds' "train only the top layers" on the
  fine-tuning side (``mlp-probe`` is the frozen-feature side).
* ``init: random`` fine-tunes a randomly initialised encoder of the same architecture the same way:
  the reference that measures what pre-training adds.
* Calibration (the seeds' "better classifier calibration"): the classifier's test probabilities (the softmax of its
  logits) are scored by :mod:`hfssl.evaluation.calibration`, the functions of the ``calibration`` protocol: every row
  carries ``ece``, ``mce``, ``nll``, ``brier`` and ``mean_confidence`` over ``bins`` (15) confidence bins, and the
  result holds the reliability bins (``extras["reliability"]``) for the protocol's reliability diagram.

ViT classifiers in transformers classify from the CLS token (``ViTForImageClassification``), so a
ViT fine-tuned here uses the CLS token whatever pooling its frozen-feature evaluation used.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForImageClassification, PretrainedConfig
from transformers.utils import ModelOutput

from hfssl.backbones import pool_features
from hfssl.data.config import ImageDataConfig
from hfssl.data.images import PixelDataset, collate_images, read_labels, read_pixels
from hfssl.data.training import TrainingData
from hfssl.evaluation.calibration import DEFAULT_BINS, calibration_scores, reliability_bins, softmax
from hfssl.evaluation.features import extract_features_with, match_channels
from hfssl.evaluation.metrics import top_k_accuracies
from hfssl.evaluation.subsets import balanced_subset, check_fraction
from hfssl.modeling_utils import HfsslPreTrainedModel
from hfssl.recipe import EvalConfig, OptimConfig, Recipe, TrainConfig
from hfssl.registry import IMAGE, MethodSpec, Paper
from hfssl.settings import RecipeError
from hfssl.training.trainer import TrainResult, train
from hfssl.views import SingleViewGenerator, ViewsConfig, build_eval_transform

logger = logging.getLogger(__name__)

MODEL_FOLDER = "model"
#: The calibration scores (:func:`hfssl.evaluation.calibration.calibration_scores`) a fine-tuning row carries.
CALIBRATION_KEYS = ("ece", "mce", "nll", "brier", "mean_confidence")
INITS = ("pretrained", "random")


# ---- the training-time model -----------------------------------------------------------------------


class FineTuneConfig(PretrainedConfig):
    """Config of the fine-tuning shell.

    Args:
        classifier_config: the transformers ``*ForImageClassification`` config as a dict
            (``model_type``, architecture, ``num_labels``, ``id2label``, ``label2id``).
        backbone_name_or_path: encoder weights to start from (``None``: random initialisation).
        layer_decay: layer-wise learning-rate decay in ``(0, 1]`` (1: off).
        label_smoothing: cross-entropy label smoothing in ``[0, 1)``.
        freeze_stages: the stem and this many first stages / blocks stay frozen (0: every parameter trains).
    """

    model_type = "hfssl_finetune"

    def __init__(self, classifier_config: dict[str, Any] | None = None, backbone_name_or_path: str | None = None,
                 layer_decay: float = 1.0, label_smoothing: float = 0.0, freeze_stages: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if classifier_config is not None and "model_type" not in classifier_config:
            raise ValueError("classifier_config needs a model_type (the encoder's config.json as a dict)")
        if not 0.0 < layer_decay <= 1.0:
            raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if freeze_stages < 0:
            raise ValueError(f"freeze_stages must be >= 0 (0: nothing frozen), got {freeze_stages}")
        self.freeze_stages = freeze_stages
        self.classifier_config = dict(classifier_config or {"model_type": "resnet"})
        self.backbone_name_or_path = backbone_name_or_path
        self.layer_decay = layer_decay
        self.label_smoothing = label_smoothing


@dataclass
class FineTuneOutput(ModelOutput):
    """``loss`` (cross-entropy) and ``logits`` ``(B, num_labels)``."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


def classifier_config_from(config_dict: dict[str, Any]) -> PretrainedConfig:
    values = dict(config_dict)
    model_type = values.pop("model_type")
    values.pop("architectures", None)
    if "id2label" in values:  # JSON turns the integer keys into strings
        values["id2label"] = {int(key): value for key, value in values["id2label"].items()}
    return AutoConfig.for_model(model_type, **values)


_BLOCK = re.compile(r"\.(?:layer|stages|layers|blocks)\.(\d+)\.")
#: The stem of an encoder: ResNet's ``embedder``, ConvNeXt's and ViT's ``embeddings``.
_STEMS = ("embedder", "embeddings")


def frozen_modules(encoder: nn.Module, freeze_stages: int) -> list[str]:
    """The names of the modules of ``encoder`` (a transformers vision base model) that ``freeze_stages = N``
    freezes: its stem and its first ``N`` stages / blocks (``encoder.stages.0``, ``encoder.layer.0``, ...).

    Raises:
        RecipeError: ``N`` is larger than the encoder's number of stages / blocks (or it has none).
    """
    if freeze_stages == 0:
        return []
    stages: dict[int, str] = {}
    for name, _ in encoder.named_parameters():
        match = _BLOCK.search(f".{name}")
        if match is not None:  # the first match is the outermost: encoder.stages.0 before its layers.0
            index = int(match.group(1))
            stages.setdefault(index, f".{name}"[1:match.end() - 1])
    count = len(stages)
    if freeze_stages > count:
        raise RecipeError(f"eval.finetune.freeze_stages is {freeze_stages}, but the {type(encoder).__name__} has "
                          f"{count} stages / blocks: give 0 (train everything) to {count} (train only the final "
                          "norm and the head)")
    stems = [name for name, _ in encoder.named_children() if name in _STEMS]
    return stems + [stages[index] for index in sorted(stages)[:freeze_stages]]


def load_classifier_encoder(classifier: nn.Module, pretrained: nn.Module, source: str | None, role: str = "") -> None:
    """Load an encoder's weights into a transformers ``*ForImageClassification``'s encoder (``base_model``). The
    encoder may hold a pooler the classifier does not use (``ViTModel``'s dense + tanh); every other weight must match.

    Raises:
        ValueError: a weight is missing or unexpected; the message names the encoder ``source`` and the
            ``role`` of the classifier (``"student "`` for distillation).
    """
    result = classifier.base_model.load_state_dict(pretrained.state_dict(), strict=False)
    unexpected = [name for name in result.unexpected_keys if not name.startswith("pooler.")]
    if result.missing_keys or unexpected:
        raise ValueError(f"the encoder {source!r} does not fit the {role}{type(classifier).__name__}: missing "
                         f"{result.missing_keys[:5]}, unexpected {unexpected[:5]}")


class FineTuneForImageClassification(HfsslPreTrainedModel):
    """A transformers ``*ForImageClassification`` (``self.classifier``) trained with cross-entropy."""

    config_class = FineTuneConfig
    base_model_prefix = "finetune"

    def __init__(self, config: FineTuneConfig) -> None:
        super().__init__(config)
        self.classifier = AutoModelForImageClassification.from_config(classifier_config_from(config.classifier_config))
        self.post_init()
        #: Modules of the encoder kept frozen (``freeze_stages``): no gradients, always in eval mode.
        self.frozen_modules = frozen_modules(self.get_backbone(), config.freeze_stages)
        for name in self.frozen_modules:
            self.get_backbone().get_submodule(name).requires_grad_(False)

    def train(self, mode: bool = True) -> FineTuneForImageClassification:
        """As ``nn.Module.train``, but frozen stages stay in eval mode: their BatchNorm statistics do not move."""
        super().train(mode)
        for name in getattr(self, "frozen_modules", ()):
            self.get_backbone().get_submodule(name).eval()
        return self

    def get_backbone(self) -> nn.Module:
        """The encoder inside the classifier (``ResNetModel``, ``ViTModel``, ...)."""
        return self.classifier.base_model

    def load_pretrained_backbone(self, pretrained: nn.Module) -> None:
        """Load an encoder's weights into the classifier's encoder (:func:`load_classifier_encoder`)."""
        load_classifier_encoder(self.classifier, pretrained, self.config.backbone_name_or_path)

    def get_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pool_features(self.get_backbone()(pixel_values=pixel_values))

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> FineTuneOutput:
        logits = self.classifier(pixel_values=pixel_values).logits
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits.float(), labels, label_smoothing=self.config.label_smoothing)
        return FineTuneOutput(loss=loss, logits=logits)

    def parameter_lr_scales(self) -> dict[str, float]:
        """Layer-wise learning-rate decay (see the module docstring); empty when ``layer_decay`` is 1."""
        decay = float(self.config.layer_decay)
        if decay >= 1.0:
            return {}
        prefix = self.classifier.base_model_prefix
        names = [name for name, _ in self.named_parameters()]
        blocks = [int(match.group(1)) for name in names if (match := _BLOCK.search(name))]
        depth = (max(blocks) + 1) if blocks else 0
        scales = {}
        for name in names:
            match = _BLOCK.search(name)
            inner = name.split(f"classifier.{prefix}.", 1)
            if match:
                layer = int(match.group(1)) + 1
            elif len(inner) == 2 and inner[1].startswith(("embeddings", "embedder")):
                layer = 0
            else:  # the head and the final norm
                layer = depth + 1
            scales[name] = decay ** (depth + 1 - layer)
        return scales


# ---- the unregistered method of a classifier protocol ------------------------------------------------


def unregistered_method(name: str, config_class: type[PretrainedConfig], model_class: type[HfsslPreTrainedModel],
                        display_name: str, paper: Paper, recipe_name: str) -> tuple[MethodSpec, type[Recipe]]:
    """The :class:`MethodSpec` of a protocol's training shell that is no registered SSL method (fine-tuning,
    distillation, the semi-supervised protocols), and the :class:`Recipe` subclass whose ``spec`` it is.

    The spec stays out of the registry: :func:`train_shell` hands it to the engine with the protocol's own
    ``build_data``; it builds no inputs of its own and exports nothing (the protocol saves its classifier).
    The recipe class is named ``recipe_name`` in ``model_class``'s module, where the caller binds it.
    """
    method_spec = MethodSpec(name=name, config_class=config_class, model_class=model_class, modality=IMAGE,
                             family="vision-ssl", display_name=display_name, paper=paper,
                             build_inputs=lambda recipe, data: None,
                             export=lambda model, output_dir, context: output_dir)

    @dataclass
    class UnregisteredRecipe(Recipe):
        @property
        def spec(self) -> MethodSpec:
            return method_spec

    UnregisteredRecipe.__name__ = UnregisteredRecipe.__qualname__ = recipe_name
    UnregisteredRecipe.__module__ = model_class.__module__
    UnregisteredRecipe.__doc__ = f"A recipe of the unregistered {display_name} method: its ``spec`` is {name!r}'s own."
    return method_spec, UnregisteredRecipe


def train_shell(recipe: Recipe, output_dir: Path, build_data: Callable[[Recipe, Any], TrainingData],
                resume: bool) -> TrainResult:
    """Train the shell of ``recipe`` (a recipe class of :func:`unregistered_method`) with the one engine on the
    protocol's data: into ``output_dir``, replacing an earlier run there, or from its newest checkpoint (``resume``)."""
    return train(recipe, output_dir, resume="auto" if resume else False, overwrite=not resume,
                 spec=replace(recipe.spec, build_data=build_data))


def shell_training(settings: Any, batch_size: int) -> dict[str, Any]:
    """The ``optim`` and ``train`` sections of a classifier protocol's recipe from its settings (``lr``,
    ``weight_decay``, ``warmup_ratio``, ``epochs``, ``max_steps``, ``seed``, ``mixed_precision``,
    ``checkpoint_every``): AdamW on a cosine schedule, no progress bar, trackers or collapse monitor."""
    return {"optim": OptimConfig(name="adamw", lr=settings.lr, weight_decay=settings.weight_decay,
                                 warmup_ratio=settings.warmup_ratio, schedule="cosine"),
            "train": TrainConfig(batch_size=batch_size, epochs=settings.epochs, max_steps=settings.max_steps,
                                 seed=settings.seed, mixed_precision=settings.mixed_precision,
                                 checkpoint_every=settings.checkpoint_every, progress_bar=False, trackers=(),
                                 log_every=50, monitor_every=10**9)}


FINETUNE_SPEC, FineTuneRecipe = unregistered_method(
    "finetune", FineTuneConfig, FineTuneForImageClassification, "fine-tuning",
    Paper(title="Masked Autoencoders Are Scalable Vision Learners (fine-tuning protocol)",
          url="https://arxiv.org/abs/2111.06377", bibtex=""),
    "FineTuneRecipe")


# ---- settings and the run ------------------------------------------------------------------------------


def check_length(prefix: str, epochs: float, max_steps: int | None) -> None:
    """A classifier protocol's training length: ``epochs > 0`` unless ``max_steps`` is set, which must be ``>= 1``.

    Raises:
        RecipeError: naming ``<prefix>.epochs`` or ``<prefix>.max_steps`` (``prefix``: ``eval.<protocol>``).
    """
    if epochs <= 0 and max_steps is None:
        raise RecipeError(f"{prefix}.epochs must be > 0, got {epochs!r}")
    if max_steps is not None and max_steps < 1:
        raise RecipeError(f"{prefix}.max_steps must be >= 1, got {max_steps!r}")


def check_crop_scale(prefix: str, crop_scale: tuple[float, float]) -> None:
    """Raise ``RecipeError`` naming ``<prefix>.crop_scale`` unless it is ``[low, high]`` in ``(0, 1]``."""
    if len(crop_scale) != 2 or not 0.0 < crop_scale[0] <= crop_scale[1] <= 1.0:
        raise RecipeError(f"{prefix}.crop_scale must be [low, high] in (0, 1], got {crop_scale!r}")


def check_label_fractions(key: str, fractions: Iterable[float]) -> None:
    """:func:`~hfssl.evaluation.subsets.check_fraction` of each fraction, refused as a ``RecipeError`` naming
    ``key``."""
    for fraction in fractions:
        try:
            check_fraction(fraction, key)
        except ValueError as error:
            raise RecipeError(str(error)) from None


@dataclass
class FineTuneSettings:
    """``eval.finetune``: how the encoder is fine-tuned (see the module docstring).

    ``epochs`` count passes over the (label-fraction) training rows; ``max_steps`` wins when set.
    ``output_dir``: where the runs go (``<dir>/<label fraction>/model`` is the classifier); by
    default ``RUN/finetune`` for an hfssl run, else ``finetune-<encoder folder name>`` in the
    working directory. ``resume``: continue an interrupted fine-tuning from its newest checkpoint
    (exact), instead of starting again.
    """

    epochs: float = 5.0
    max_steps: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_ratio: float = 0.1
    layer_decay: float = 1.0
    label_smoothing: float = 0.0
    freeze_stages: int = 0
    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip_prob: float = 0.5
    label_fractions: tuple[float, ...] = (1.0,)
    init: str = "pretrained"
    seed: int = 0
    mixed_precision: str | None = None
    checkpoint_every: int = 500
    output_dir: str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise RecipeError(f"eval.finetune.init must be one of {', '.join(INITS)}, got {self.init!r}")
        check_length("eval.finetune", self.epochs, self.max_steps)
        if self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise RecipeError("eval.finetune: batch_size must be >= 1, lr > 0 and weight_decay >= 0, got "
                              f"{self.batch_size!r}, {self.lr!r}, {self.weight_decay!r}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise RecipeError(f"eval.finetune.layer_decay must be in (0, 1] (1: off; MAE uses 0.65-0.75), "
                              f"got {self.layer_decay!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise RecipeError(f"eval.finetune.label_smoothing must be in [0, 1), got {self.label_smoothing!r}")
        if self.freeze_stages < 0:
            raise RecipeError(f"eval.finetune.freeze_stages must be >= 0 (0: every parameter trains; N: the stem and "
                              f"the first N stages / blocks stay frozen), got {self.freeze_stages!r}")
        if not self.label_fractions:
            raise RecipeError("eval.finetune.label_fractions must list at least one fraction (1.0: all labels)")
        check_label_fractions("eval.finetune.label_fractions", self.label_fractions)
        check_crop_scale("eval.finetune", self.crop_scale)

    def row_settings(self) -> dict[str, Any]:
        """The settings recorded in every result row."""
        return {"init": self.init, "epochs": self.epochs if self.max_steps is None else None,
                "max_steps": self.max_steps, "batch_size": self.batch_size, "lr": self.lr,
                "layer_decay": self.layer_decay, "label_smoothing": self.label_smoothing,
                "freeze_stages": self.freeze_stages, "seed": self.seed}


@dataclass
class ClassifierResult:
    """What a classifier protocol's run leaves: the result row, test predictions and labels, where the
    classifier is, the engine's optimiser steps and anything else the protocol passes on."""

    row: dict[str, Any]
    predictions: np.ndarray
    labels: np.ndarray
    model_dir: Path
    steps: int = 0
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class FineTuneResult(ClassifierResult):
    """What :func:`finetune` leaves: the result row, test predictions, where the classifier is."""


def make_view_inputs(views: SingleViewGenerator, channels: int,
                     teacher_input: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Any:
    """``make_inputs``: one view of each image (``pixel_values``) and its ``labels``; with ``teacher_input``
    (distillation, a teacher whose processor differs) also ``teacher_pixel_values = teacher_input(view)``."""
    def make_inputs(batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        device = generator.device
        pixels = match_channels(batch["pixels"].to(device), channels)
        inputs = {"pixel_values": views(pixels, generator)["pixel_values"], "labels": batch["labels"].to(device)}
        if teacher_input is not None:
            inputs["teacher_pixel_values"] = teacher_input(inputs["pixel_values"])
        return inputs

    return make_inputs


def _label_names(label_names: list[str] | None, num_classes: int) -> dict[int, str]:
    if label_names and len(label_names) >= num_classes:
        return {index: str(name) for index, name in enumerate(label_names[:num_classes])}
    return {index: f"LABEL_{index}" for index in range(num_classes)}


def processor_normalisation(processor: Any, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """An image processor's ``(mean, std)``, one value per channel of a model taking ``channels`` channels (the
    first value repeated when the processor was made for the other number of channels; 0.5 when it has none)."""
    mean = tuple(float(value) for value in getattr(processor, "image_mean", (0.5,) * channels))
    std = tuple(float(value) for value in getattr(processor, "image_std", (0.5,) * channels))
    if len(mean) != channels:  # an encoder made for grey input with a processor for RGB, or the reverse
        mean, std = (mean[0],) * channels, (std[0],) * channels
    return mean, std


def processor_image_size(processor: Any, default: int) -> int:
    """The side an image processor resizes to (``size.height`` or ``size.shortest_edge``), else ``default``."""
    size = getattr(processor, "size", None) or {}
    return int(size.get("height") or size.get("shortest_edge") or default)


@dataclass
class ClassifierSource:
    """What a classifier trained from an encoder is made of (the fine-tuning and semi-supervised protocols).

    Attributes:
        encoder_config: the encoder's transformers config. processor: its image processor.
        channels / mean / std: the encoder's input channels and the processor's normalisation (one value per
            channel, repeated when the processor was made for the other number of channels).
        data_size: the side of the prepared images. image_size: the side the encoder takes.
    """

    encoder_config: PretrainedConfig
    processor: Any
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    data_size: int
    image_size: int

    @classmethod
    def load(cls, encoder: str, train_dataset: Any, freeze_stages: int = 0) -> ClassifierSource:
        """Read ``encoder``'s config and processor; ``freeze_stages`` is checked against its stages first."""
        encoder_config = AutoConfig.from_pretrained(encoder)
        if freeze_stages:
            with torch.device("meta"):  # the module names only: refused before any folder is written
                frozen_modules(AutoModel.from_config(encoder_config), freeze_stages)
        processor = AutoImageProcessor.from_pretrained(encoder)
        channels = int(getattr(encoder_config, "num_channels", 3))
        mean, std = processor_normalisation(processor, channels)
        data_size = int(read_pixels(train_dataset, 0, 1).shape[-1])  # the side of the prepared images
        image_size = processor_image_size(processor, data_size)
        return cls(encoder_config, processor, channels, mean, std, data_size, image_size)

    def classifier_config(self, label_names: list[str] | None, num_classes: int) -> dict[str, Any]:
        """The ``*ForImageClassification`` config (as a dict) of the encoder with ``num_classes`` labels."""
        id2label = _label_names(label_names, num_classes)
        config = {**self.encoder_config.to_dict(), "num_labels": num_classes, "id2label": id2label,
                  "label2id": {name: index for index, name in id2label.items()}}
        config.pop("architectures", None)
        for key in ("transformers_version", "dtype", "torch_dtype"):
            config.pop(key, None)
        return config


def finetune(encoder: str, train_dataset: Any, test_dataset: Any, label_names: list[str] | None, num_classes: int,
             settings: FineTuneSettings, output_dir: str | Path, label_fraction: float = 1.0,
             data_config: ImageDataConfig | None = None) -> FineTuneResult:
    """Fine-tune ``encoder`` on a (label-fraction subset of a) prepared labelled split; see the module docstring.

    Args:
        encoder: a transformers vision encoder folder or Hub id with its image processor.
        train_dataset / test_dataset: prepared splits (``pixels`` uint8 ``(C, H, W)``, ``label``).
        label_names: class names (``id2label``), or ``None`` for ``LABEL_<i>``.
        settings: :class:`FineTuneSettings`.
        output_dir: the run folder (checkpoints, logs, ``model/``: the plain classifier).
        label_fraction: train on this class-balanced seeded share of ``train_dataset``.
        data_config: the data's section, recorded in the run's recipe.

    Returns:
        :class:`FineTuneResult` with the row ``{label_fraction?, num_labelled, top1, top5, ece, mce, nll, brier,
        mean_confidence, bins, ...settings}`` and the reliability bins in ``extras["reliability"]``.
    """
    output_dir = Path(output_dir)
    check_output(output_dir, FineTuneConfig.model_type, "eval.finetune.output_dir", "fine-tuning", "RUN/finetune")
    source = ClassifierSource.load(encoder, train_dataset, settings.freeze_stages)
    processor, channels, mean, std = source.processor, source.channels, source.mean, source.std
    data_size, image_size = source.data_size, source.image_size

    train_labels = read_labels(train_dataset)
    if label_fraction < 1.0:
        train_dataset = train_dataset.select(balanced_subset(train_labels, label_fraction, settings.seed).tolist())
    classifier_config = source.classifier_config(label_names, num_classes)
    views = ViewsConfig(num_views=1, crop_size=image_size, crop_scale=tuple(settings.crop_scale),
                        flip_prob=settings.flip_prob, mean=mean, std=std)
    data = data_config or ImageDataConfig(source="in-memory")
    recipe = FineTuneRecipe(
        method=FINETUNE_SPEC.name,
        model={"classifier_config": classifier_config, "layer_decay": settings.layer_decay,
               "label_smoothing": settings.label_smoothing, "freeze_stages": settings.freeze_stages,
               "backbone_name_or_path": str(encoder) if settings.init == "pretrained" else None},
        data=data, views=views, **shell_training(settings, min(settings.batch_size, len(train_dataset))),
        eval=EvalConfig(protocols=(), baselines=False,
                        settings={"finetune": {**asdict(settings), "label_fractions": [label_fraction]}}),
    )
    generator_views = SingleViewGenerator(views, data_size, channels)

    def build_data(recipe: Recipe, accelerator: Any) -> TrainingData:
        return TrainingData(train_dataset=PixelDataset(train_dataset), collate_fn=collate_images,
                            make_inputs=make_view_inputs(generator_views, channels), label_names=label_names)

    logger.info("fine-tuning %s (%s) on %d labelled rows (label fraction %g) into %s", encoder,
                settings.init, len(train_dataset), label_fraction, output_dir)
    result = train_shell(recipe, output_dir, build_data, settings.resume)
    model = result.model.eval()
    classifier = model.classifier
    scores, test_labels, accuracies = score_classifier(classifier, views, image_size, channels, test_dataset)
    model_dir = save_classifier(classifier, processor, output_dir / MODEL_FOLDER)
    row: dict[str, Any] = {}
    if label_fraction < 1.0:
        row["label_fraction"] = label_fraction
    probabilities = softmax(scores)
    calibration = calibration_scores(probabilities, test_labels, DEFAULT_BINS)
    row.update(num_labelled=len(train_dataset), **settings.row_settings(), steps=result.steps, **accuracies,
               **{key: calibration[key] for key in CALIBRATION_KEYS}, bins=DEFAULT_BINS)
    row = {key: value for key, value in row.items() if value is not None}
    (output_dir / "finetune_result.json").write_text(json.dumps(row, indent=2) + "\n")
    logger.info("fine-tuned %s: test top-1 %.4f top-5 %.4f ECE %.4f (%s)", encoder, accuracies["top1"],
                accuracies["top5"], calibration["ece"], model_dir)
    return FineTuneResult(row, np.asarray(scores).argmax(axis=1), np.asarray(test_labels), model_dir, result.steps,
                          {"reliability": reliability_bins(probabilities, test_labels, DEFAULT_BINS)})


def score_classifier(classifier: nn.Module, views: ViewsConfig, image_size: int, channels: int, test_dataset: Any,
                     classifier_input: Callable[[torch.Tensor], torch.Tensor] | None = None,
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """A trained classifier's test logits, labels and top-1 / top-5 accuracies, the test images through the
    deterministic transform of feature extraction (the exported image processor's), then ``classifier_input``
    when given (a distillation teacher whose processor differs from the student's ``views``)."""
    transform = build_eval_transform(views, image_size, channels)
    device = next(classifier.parameters()).device

    def logits(pixel_values: torch.Tensor) -> torch.Tensor:
        if classifier_input is not None:
            pixel_values = classifier_input(pixel_values)
        return classifier(pixel_values=pixel_values).logits

    def to_model(pixels: torch.Tensor) -> torch.Tensor:
        return transform(match_channels(pixels, channels))

    scores, test_labels = extract_features_with(logits, to_model, test_dataset, 256, device=device, model=classifier)
    return np.asarray(scores), np.asarray(test_labels), top_k_accuracies(scores, test_labels)


def check_output(output_dir: Path, model_type: str, where: str, run: str, default: str | None = None) -> None:
    """A protocol's run replaces an earlier run of its shell (``model_type``) in its folder, never anything else.

    Raises:
        RecipeError: ``output_dir`` (the setting ``where``) holds another model; the message names the ``run``
            it would have to be and the ``default`` folder, if any.
    """
    config = output_dir / "config.json"
    if config.is_file():
        found = json.loads(config.read_text()).get("model_type")
        if found != model_type:
            hint = f" (the default is {default})" if default else ""
            raise RecipeError(f"{where} {str(output_dir)!r} holds a {found!r} model, not an earlier {run} run; "
                              f"choose another folder{hint}")


def save_classifier(classifier: nn.Module, processor: Any, model_dir: Path) -> Path:
    """Save the plain transformers classifier and its image processor (replacing an earlier one)."""
    if model_dir.exists():
        shutil.rmtree(model_dir)
    classifier.save_pretrained(model_dir, safe_serialization=True)
    processor.save_pretrained(model_dir)
    return model_dir
