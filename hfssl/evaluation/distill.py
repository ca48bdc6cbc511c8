"""SimCLRv2's distillation (phase 3, Chen et al. 2020b sec. 2 "Self-training / knowledge distillation via
unlabeled examples"): a fine-tuned teacher labels the unlabelled images, a student learns from its labels.

**A protocol, not a method.** Like :mod:`hfssl.evaluation.finetune`, distillation trains a plain transformers
``AutoModelForImageClassification`` for a downstream task, reads the labelled splits of the evaluated data
(the whole train split as unlabelled images, a class-balanced seeded share as labelled ones, the test split
for the score) and ends in a classifier, not in an encoder: it is the ``distill`` protocol next to
``finetune``, run on an encoder (the student's initialisation) with ``eval.distill.teacher`` naming the
classifier that teaches. It builds an unregistered :class:`~hfssl.registry.MethodSpec` and calls the one
engine (:func:`hfssl.training.trainer.train`): Accelerate, the learning-rate schedule, checkpoints and exact
resume. A registered method would have to pretend that a classifier is an SSL encoder with an export,
capabilities and a card of the ``vision-ssl`` family; the protocol is what SimCLRv2 does: phase 3 after the
phase-2 fine-tuning, scored on the test set at the same label fraction.

* **Teacher**: ``eval.distill.teacher`` is any ``AutoModelForImageClassification`` folder or Hub id, or an
  hfssl ``finetune`` output (``RUN/finetune/fraction-0.01``, whose ``model/`` holds the classifier). It is a
  frozen teacher of the training shell (:meth:`hfssl.modeling_utils.HfsslPreTrainedModel.add_frozen_teacher`):
  eval mode, no gradients, not in the optimiser, not in checkpoints (its weights are reloaded when a run
  resumes, and a fingerprint of them is checkpointed so a changed teacher is refused).
* **Loss** (SimCLRv2 eq. 2 and the sentence after it): ``(1 - a) * L_distill + a * L_labelled`` with
  ``L_distill = -mean_i sum_y P_T(y | x_i; T) log P_S(y | x_i; T)`` over every image of the batch (teacher and
  student see the same augmented view), ``P(y | x; T) = softmax(logits / T)``, and ``L_labelled`` the
  cross-entropy on the batch's rows in the labelled share (``a = labelled_weight``, 0 by default: SimCLRv2's
  main results use the distillation loss alone).
* **Student**: the evaluated encoder's architecture, from its weights (``init: pretrained``, the "self-
  distillation" of SimCLRv2) or from scratch (``init: random``), or a smaller architecture from scratch
  (``student_config``: a transformers vision config as a mapping, e.g. a narrower ResNet). To distil into a
  smaller *pre-trained* student, run the protocol on that student's encoder.
* The result is the student as a plain transformers classifier with the encoder's image processor in
  ``OUTPUT/model`` (``pipeline("image-classification")`` loads it without hfssl); the row carries the label
  fraction, the seed, the teacher and its own test accuracy next to the student's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification, PretrainedConfig
from transformers.utils import ModelOutput

from hfssl.backbones import pool_features
from hfssl.data.config import ImageDataConfig
from hfssl.data.images import PixelDataset, collate_images, read_labels, read_pixels
from hfssl.data.training import TrainingData
from hfssl.evaluation.finetune import (
    INITS, MODEL_FOLDER, ClassifierResult, _label_names, check_crop_scale, check_label_fractions, check_length,
    check_output, classifier_config_from, load_classifier_encoder, make_view_inputs, processor_image_size,
    processor_normalisation, save_classifier, score_classifier, shell_training, train_shell, unregistered_method,
)
from hfssl.evaluation.subsets import balanced_subset
from hfssl.losses.distillation import SoftTargetCrossEntropy
from hfssl.modeling_utils import FINGERPRINT_WORDS, HfsslPreTrainedModel, refuse_changed_teacher, weights_fingerprint
from hfssl.recipe import EvalConfig, Recipe
from hfssl.registry import Paper
from hfssl.settings import RecipeError
from hfssl.views import SingleViewGenerator, ViewsConfig

logger = logging.getLogger(__name__)

NO_TEACHER = ("the distill protocol needs a teacher: set eval.distill.teacher to a fine-tuned classifier (an hfssl "
              "finetune output such as RUN/finetune/fraction-0.01, or any AutoModelForImageClassification folder / "
              "Hub id)")
#: The label of rows outside the labelled share (ignored by the labelled loss).
UNLABELLED = -100


# ---- the training-time model -----------------------------------------------------------------------


class DistillConfig(PretrainedConfig):
    """Config of the distillation shell.

    Args:
        classifier_config: the student's transformers ``*ForImageClassification`` config as a dict.
        backbone_name_or_path: encoder weights the student starts from (``None``: random initialisation).
        teacher_name_or_path: the teacher classifier (folder or Hub id); its weights are loaded when a run starts.
        teacher_config: the teacher's classifier config as a dict (read from ``teacher_name_or_path`` when not given).
        temperature: ``T > 0`` of both softmaxes.
        labelled_weight: ``a`` in ``[0, 1]``, the share of the labelled cross-entropy in the loss.
    """

    model_type = "hfssl_distill"
    # Declared as a config field: transformers v5 otherwise takes ``temperature`` for a generation parameter.
    temperature: float = 1.0

    def __init__(self, classifier_config: dict[str, Any] | None = None, backbone_name_or_path: str | None = None,
                 teacher_name_or_path: str | None = None, teacher_config: dict[str, Any] | None = None,
                 temperature: float = 1.0, labelled_weight: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        if not 0.0 <= labelled_weight <= 1.0:
            raise ValueError(f"labelled_weight must be in [0, 1], got {labelled_weight!r}")
        if teacher_config is None and teacher_name_or_path is not None:
            teacher_config = AutoConfig.from_pretrained(teacher_name_or_path).to_dict()
        self.classifier_config = _clean_config(classifier_config or {"model_type": "resnet"})
        self.teacher_config = _clean_config(teacher_config or self.classifier_config)
        self.backbone_name_or_path = backbone_name_or_path
        self.teacher_name_or_path = teacher_name_or_path
        self.temperature = temperature
        self.labelled_weight = labelled_weight


def _clean_config(config: dict[str, Any]) -> dict[str, Any]:
    if "model_type" not in config:
        raise ValueError("a classifier config needs a model_type (its config.json as a dict)")
    return {key: value for key, value in config.items()
            if key not in ("architectures", "transformers_version", "dtype", "torch_dtype", "_name_or_path")}


@dataclass
class DistillOutput(ModelOutput):
    """``loss`` (the mixed loss), its parts ``distill_loss`` and ``labelled_loss``, the student's ``logits``."""

    loss: torch.Tensor | None = None
    distill_loss: torch.Tensor | None = None
    labelled_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None


def labelled_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy averaged over the rows whose label is not :data:`UNLABELLED` (0 when there are none)."""
    total = nn.functional.cross_entropy(logits.float(), labels, ignore_index=UNLABELLED, reduction="sum")
    return total / (labels != UNLABELLED).sum().clamp(min=1)


class DistillForImageClassification(HfsslPreTrainedModel):
    """A student transformers ``*ForImageClassification`` (``self.classifier``) learning from a frozen teacher
    classifier's temperature-softened probabilities (``self.teacher``)."""

    config_class = DistillConfig
    base_model_prefix = "distill"
    frozen_teachers = ("teacher",)
    training_state = ("teacher_fingerprint",)

    def __init__(self, config: DistillConfig) -> None:
        super().__init__(config)
        self.classifier = AutoModelForImageClassification.from_config(classifier_config_from(config.classifier_config))
        teacher_config = classifier_config_from(config.teacher_config)
        self.add_frozen_teacher("teacher", lambda: AutoModelForImageClassification.from_config(teacher_config))
        if self.teacher.config.num_labels != self.classifier.config.num_labels:
            raise ValueError(f"the teacher predicts {self.teacher.config.num_labels} classes and the student "
                             f"{self.classifier.config.num_labels}: distil on the data the teacher was fine-tuned on")
        self.criterion = SoftTargetCrossEntropy(config.temperature)
        self.register_buffer("teacher_fingerprint", torch.zeros(FINGERPRINT_WORDS, dtype=torch.int64),
                             persistent=False)
        self.post_init()

    def get_backbone(self) -> nn.Module:
        """The student's encoder inside its classifier (``ResNetModel``, ``ViTModel``, ...)."""
        return self.classifier.base_model

    def get_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pool_features(self.get_backbone()(pixel_values=pixel_values))

    def load_pretrained_backbone(self, pretrained: nn.Module) -> None:
        """The student's encoder from an encoder whose pooler the classifier may not use (as fine-tuning)."""
        load_classifier_encoder(self.classifier, pretrained, self.config.backbone_name_or_path, "student ")

    def load_pretrained_weights(self) -> list[str]:
        """The student's encoder (``backbone_name_or_path``), then the teacher's classifier, fingerprinted."""
        loaded = super().load_pretrained_weights()
        path = self.config.teacher_name_or_path
        if not path:
            raise ValueError("distillation needs the teacher's weights: set eval.distill.teacher")
        teacher = AutoModelForImageClassification.from_pretrained(path)
        self.teacher.load_state_dict(teacher.state_dict())
        self.teacher.requires_grad_(False)
        self.teacher_fingerprint.copy_(weights_fingerprint(self.teacher))
        return [*loaded, f"{path} (teacher)"]

    def load_training_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Refuse a teacher whose weights changed since the checkpoint was written, then restore the state."""
        refuse_changed_teacher(state, self.teacher_fingerprint, self.config.teacher_name_or_path,
                               "; restore it or start the distillation again")
        super().load_training_state_dict(state)

    @torch.no_grad()
    def teacher_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.teacher(pixel_values=pixel_values).logits.float()

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                teacher_pixel_values: torch.Tensor | None = None) -> DistillOutput:
        """Args:
        pixel_values: one augmented view per image for the student ``(B, C, H, W)``.
        labels: ``(B,)`` class ids, :data:`UNLABELLED` outside the labelled share (only read when
            ``labelled_weight > 0``).
        teacher_pixel_values: the same view normalised for the teacher when its processor differs
            (default: ``pixel_values``).
        """
        logits = self.classifier(pixel_values=pixel_values).logits
        targets = self.teacher_logits(pixel_values if teacher_pixel_values is None else teacher_pixel_values)
        distill_loss = self.criterion(logits, targets)
        weight = float(self.config.labelled_weight)
        if labels is None or weight == 0.0:
            return DistillOutput(loss=distill_loss, distill_loss=distill_loss, logits=logits)
        labelled_loss = labelled_cross_entropy(logits, labels)
        loss = (1.0 - weight) * distill_loss + weight * labelled_loss
        return DistillOutput(loss=loss, distill_loss=distill_loss, labelled_loss=labelled_loss, logits=logits)


DISTILL_SPEC, DistillRecipe = unregistered_method(
    "distill", DistillConfig, DistillForImageClassification, "distillation",
    Paper(title="Big Self-Supervised Models are Strong Semi-Supervised Learners (distillation, phase 3)",
          url="https://arxiv.org/abs/2006.10029", bibtex=""),
    "DistillRecipe")


# ---- settings and the run ------------------------------------------------------------------------------


@dataclass
class DistillSettings:
    """``eval.distill``: how the student learns from the teacher (see the module docstring).

    ``teacher``: the teacher classifier (required). ``label_fraction``: the class-balanced seeded share of the
    train split that counts as labelled (the row's fraction; the labelled loss reads it when
    ``labelled_weight > 0``); every train image is an unlabelled input. ``init`` / ``student_config``: the
    student (see the module docstring). ``epochs`` count passes over the whole train split; ``max_steps`` wins
    when set. ``output_dir``: by default ``RUN/distill/fraction-<f>[-random|-small]`` beside the run.
    ``resume``: continue an interrupted distillation from its newest checkpoint (exact).
    """

    teacher: str | None = None
    label_fraction: float = 1.0
    temperature: float = 1.0
    labelled_weight: float = 0.0
    init: str = "pretrained"
    student_config: dict[str, Any] | None = None
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_ratio: float = 0.1
    crop_scale: tuple[float, float] = (0.5, 1.0)
    flip_prob: float = 0.5
    seed: int = 0
    mixed_precision: str | None = None
    checkpoint_every: int = 500
    output_dir: str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if not self.teacher:  # refused when the recipe loads, not at the end of its training
            raise RecipeError(NO_TEACHER)
        if self.init not in INITS:
            raise RecipeError(f"eval.distill.init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.student_config is not None:
            if "model_type" not in self.student_config:
                raise RecipeError("eval.distill.student_config needs a model_type (a transformers vision config, e.g. "
                                  "{model_type: resnet, hidden_sizes: [16, 32, 64], depths: [1, 1, 1]})")
            if self.init != "random":
                raise RecipeError("eval.distill.student_config is a new architecture trained from scratch: set "
                                  "eval.distill.init=random (or leave student_config out to start from the encoder)")
        if not self.temperature > 0:
            raise RecipeError(f"eval.distill.temperature must be > 0, got {self.temperature!r}")
        if not 0.0 <= self.labelled_weight <= 1.0:
            raise RecipeError(f"eval.distill.labelled_weight must be in [0, 1] (0: distillation loss only), "
                              f"got {self.labelled_weight!r}")
        check_label_fractions("eval.distill.label_fraction", (self.label_fraction,))
        check_length("eval.distill", self.epochs, self.max_steps)
        if self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0:
            raise RecipeError("eval.distill: batch_size must be >= 1, lr > 0 and weight_decay >= 0, got "
                              f"{self.batch_size!r}, {self.lr!r}, {self.weight_decay!r}")
        check_crop_scale("eval.distill", self.crop_scale)

    def row_settings(self) -> dict[str, Any]:
        """The settings recorded in every result row."""
        return {"teacher": self.teacher, "temperature": self.temperature, "labelled_weight": self.labelled_weight,
                "init": self.init, "student": "config" if self.student_config else "encoder",
                "epochs": self.epochs if self.max_steps is None else None, "max_steps": self.max_steps,
                "batch_size": self.batch_size, "lr": self.lr}


@dataclass
class DistillResult(ClassifierResult):
    """What :func:`distill` leaves: the result row, the student's test predictions, where the classifier is."""


def teacher_classifier_path(teacher: str) -> str:
    """An hfssl fine-tuning (or distillation) output folder -> its ``model/``; other folders and Hub ids as given."""
    folder = Path(teacher)
    if (folder / MODEL_FOLDER / "config.json").is_file():
        config = folder / "config.json"
        shell = json.loads(config.read_text()).get("model_type", "") if config.is_file() else "hfssl_"
        if str(shell).startswith("hfssl_"):  # the run's training shell; the classifier is in model/
            return str(folder / MODEL_FOLDER)
    return teacher


class _TeacherInput:
    """The student's normalised view re-normalised (and resized, channel-matched) for the teacher's processor."""

    def __init__(self, student: tuple[tuple[float, ...], tuple[float, ...]],
                 teacher: tuple[tuple[float, ...], tuple[float, ...]], channels: int, size: int) -> None:
        self.student_mean, self.student_std = (torch.tensor(values).view(1, -1, 1, 1) for values in student)
        self.teacher_mean, self.teacher_std = (torch.tensor(values).view(1, -1, 1, 1) for values in teacher)
        self.channels = channels
        self.size = size

    def __call__(self, pixel_values: torch.Tensor) -> torch.Tensor:
        device = pixel_values.device
        unit = pixel_values * self.student_std.to(device) + self.student_mean.to(device)  # back to [0, 1]
        if unit.shape[1] != self.channels:
            unit = unit.expand(-1, self.channels, -1, -1) if unit.shape[1] == 1 else unit.mean(dim=1, keepdim=True)
        if unit.shape[-1] != self.size:
            unit = nn.functional.interpolate(unit, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return (unit - self.teacher_mean.to(device)) / self.teacher_std.to(device)


class _PartlyLabelled(torch.utils.data.Dataset):
    """A prepared split whose labels outside ``labelled`` (a boolean mask over its rows) read :data:`UNLABELLED`."""

    def __init__(self, dataset: Any, labelled: np.ndarray) -> None:
        self.rows = PixelDataset(dataset)
        self.labelled = labelled

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict[str, Any]]:
        rows = self.rows.__getitems__(indices)
        for index, row in zip(indices, rows):
            if not self.labelled[index]:
                row["label"] = UNLABELLED
        return rows


def _student_config(encoder_config: PretrainedConfig, settings: DistillSettings, num_classes: int,
                    label_names: list[str] | None) -> dict[str, Any]:
    base = dict(settings.student_config) if settings.student_config else encoder_config.to_dict()
    if settings.student_config:
        base.setdefault("num_channels", int(getattr(encoder_config, "num_channels", 3)))
    id2label = _label_names(label_names, num_classes)
    return {**base, "num_labels": num_classes, "id2label": id2label,
            "label2id": {name: index for index, name in id2label.items()}}


def distill(encoder: str, train_dataset: Any, test_dataset: Any, label_names: list[str] | None, num_classes: int,
            settings: DistillSettings, output_dir: str | Path,
            data_config: ImageDataConfig | None = None) -> DistillResult:
    """Distil ``settings.teacher`` into a student (see the module docstring) and score it on ``test_dataset``.

    Args:
        encoder: the student's encoder (its weights with ``init: pretrained``; its architecture unless
            ``student_config``) and image processor: a transformers vision encoder folder or Hub id.
        train_dataset / test_dataset: prepared splits (``pixels`` uint8 ``(C, H, W)``, ``label``).
        label_names: class names (``id2label``), or ``None`` for ``LABEL_<i>``.
        settings: :class:`DistillSettings`.
        output_dir: the run folder (checkpoints, logs, ``model/``: the plain student classifier).
        data_config: the data's section, recorded in the run's recipe.

    Returns:
        :class:`DistillResult` with the row ``{label_fraction, seed, num_labelled, num_unlabelled, teacher,
        top1, top5, teacher_top1, ...settings}``.
    """
    if not settings.teacher:
        raise RecipeError(NO_TEACHER)
    output_dir = Path(output_dir)
    check_output(output_dir, DistillConfig.model_type, "eval.distill.output_dir", "distillation", "RUN/distill")
    teacher_path = teacher_classifier_path(settings.teacher)
    teacher_config = AutoConfig.from_pretrained(teacher_path)
    if int(teacher_config.num_labels) != num_classes:
        raise RecipeError(f"eval.distill.teacher {settings.teacher!r} predicts {teacher_config.num_labels} classes and "
                          f"the data have {num_classes}: use a teacher fine-tuned on these data")
    encoder_config = AutoConfig.from_pretrained(encoder)
    processor = AutoImageProcessor.from_pretrained(encoder)
    student_config = _student_config(encoder_config, settings, num_classes, label_names)
    channels = int(student_config.get("num_channels", 3))
    student_norm = processor_normalisation(processor, channels)
    data_size = int(read_pixels(train_dataset, 0, 1).shape[-1])
    image_size = processor_image_size(processor, data_size)
    teacher_channels = int(getattr(teacher_config, "num_channels", 3))
    try:
        teacher_processor = AutoImageProcessor.from_pretrained(teacher_path)
    except OSError:  # a classifier saved without a processor: it saw what the student sees
        teacher_processor = processor
    teacher_norm = processor_normalisation(teacher_processor, teacher_channels)
    teacher_size = processor_image_size(teacher_processor, image_size)
    teacher_input = None
    if (teacher_norm, teacher_channels, teacher_size) != (student_norm, channels, image_size):
        teacher_input = _TeacherInput(student_norm, teacher_norm, teacher_channels, teacher_size)

    labels = read_labels(train_dataset)
    labelled = np.zeros(len(labels), dtype=bool)
    labelled[balanced_subset(labels, settings.label_fraction, settings.seed)] = True
    views = ViewsConfig(num_views=1, crop_size=image_size, crop_scale=tuple(settings.crop_scale),
                        flip_prob=settings.flip_prob, mean=student_norm[0], std=student_norm[1])
    recipe = DistillRecipe(
        method=DISTILL_SPEC.name,
        model={"classifier_config": student_config, "teacher_name_or_path": teacher_path,
               "teacher_config": {key: value for key, value in teacher_config.to_dict().items()},
               "temperature": settings.temperature, "labelled_weight": settings.labelled_weight,
               "backbone_name_or_path": str(encoder) if settings.init == "pretrained" else None},
        data=data_config or ImageDataConfig(source="in-memory"), views=views,
        **shell_training(settings, min(settings.batch_size, len(train_dataset))),
        eval=EvalConfig(protocols=(), baselines=False, settings={"distill": asdict(settings)}),
    )
    generator_views = SingleViewGenerator(views, data_size, channels)

    def build_data(recipe: Recipe, accelerator: Any) -> TrainingData:
        return TrainingData(train_dataset=_PartlyLabelled(train_dataset, labelled), collate_fn=collate_images,
                            make_inputs=make_view_inputs(generator_views, channels, teacher_input),
                            label_names=label_names)

    logger.info("distilling %s into a student (%s) on %d images, %d labelled (label fraction %g), into %s",
                teacher_path, settings.init, len(labels), int(labelled.sum()), settings.label_fraction, output_dir)
    result = train_shell(recipe, output_dir, build_data, settings.resume)
    model = result.model.eval()
    student, teacher = model.classifier, model.teacher
    scores, test_labels, accuracies = score_classifier(student, views, image_size, channels, test_dataset)
    _, _, teacher_accuracies = score_classifier(teacher, views, image_size, channels, test_dataset, teacher_input)
    model_dir = save_classifier(student, processor, output_dir / MODEL_FOLDER)
    row: dict[str, Any] = {"label_fraction": settings.label_fraction, "seed": settings.seed,
                           "num_labelled": int(labelled.sum()), "num_unlabelled": len(labels),
                           **settings.row_settings(), "steps": result.steps,
                           "student_parameters": sum(parameter.numel() for parameter in student.parameters()),
                           "teacher_parameters": sum(parameter.numel() for parameter in teacher.parameters()),
                           **accuracies, "teacher_top1": teacher_accuracies["top1"]}
    row = {key: value for key, value in row.items() if value is not None}
    (output_dir / "distill_result.json").write_text(json.dumps(row, indent=2) + "\n")
    logger.info("distilled %s: student test top-1 %.4f (teacher %.4f) (%s)", teacher_path, accuracies["top1"],
                row["teacher_top1"], model_dir)
    return DistillResult(row, np.asarray(scores).argmax(axis=1), np.asarray(test_labels), model_dir, result.steps)
