"""Semi-supervised baselines on label fractions: Pseudo-Label, Mean Teacher and FixMatch (issue 24).

The seeds' label-efficiency table (SimCLRv2, Chen et al. 2020b, Table 3) ranks self-supervised pre-training +
fine-tuning against semi-supervised methods trained on the same 1 % / 10 % labels *and* the unlabelled images.
These protocols sit next to ``finetune`` (:mod:`hfssl.evaluation.finetune`) and share its parts: the encoder (an
hfssl run's ``encoder/``, any transformers vision folder / Hub id, or ``init: random`` for its architecture from
scratch) inside transformers' ``AutoModelForImageClassification``, the class-balanced seeded label subset
(:func:`hfssl.evaluation.subsets.balanced_subset`), the one engine (an unregistered :class:`MethodSpec` handed to
:func:`hfssl.training.trainer.train`: checkpoints, exact resume, schedules), test scoring through the exported
processor's transform, and the export: ``OUTPUT/model`` is a plain transformers image classifier that
``pipeline("image-classification")`` loads without hfssl.

One optimiser step sees ``B`` labelled images (``batch_size``, drawn without replacement inside the step from the
labelled subset, which is held on the device as uint8) and ``mu B`` unlabelled ones (``unlabelled_ratio = mu``;
the engine's data loader runs over *every* image of the training split, labels unread, as FixMatch does):

* **Pseudo-Label** (Lee 2013; with the confidence threshold of FixMatch's re-implementation, Sohn et al. 2020
  sec. 4): the model's own prediction on the (weak) view of an unlabelled image is its target when its
  confidence reaches ``threshold``; ``L = L_s + w(t) lambda l_u``, ``w`` a linear ramp-up over the first
  ``rampup_ratio`` of training (Lee's alpha(t)).
* **Mean Teacher** (Tarvainen & Valpola 2017): an EMA copy of the classifier (``teacher_momentum``, constant, the
  paper's alpha) sees another view of every image of the step (labelled and unlabelled); the consistency is the
  mean squared difference of the class probabilities, weighted by ``lambda w(t)`` with the sigmoid ramp-up
  ``exp(-5 (1 - t)^2)`` over the first ``rampup_ratio`` of training. The EMA teacher is what is scored and
  exported (``evaluate_teacher``), as the paper reports its better numbers.
* **FixMatch** (Sohn et al. 2020): the prediction on the weak view (flip + crop) of an unlabelled image is a hard
  target for its strong view (flip + crop + RandAugment with random magnitudes + Cutout,
  :mod:`hfssl.views.randaugment`) when its confidence reaches ``tau = 0.95``;
  ``L = L_s + lambda_u l_u`` with ``l_u`` averaged over all ``mu B`` unlabelled rows (eq. 4).

Labelled and unlabelled images go through the classifier in one forward pass (one set of BatchNorm batch
statistics, as the official FixMatch code), the losses are :mod:`hfssl.losses.semi_supervised`. Differences from
the papers, kept for a like-for-like comparison with ``finetune``: AdamW with a cosine schedule and warm-up (the
papers use SGD with Nesterov momentum), the weak view is a random resized crop (``crop_scale``, default 0.8-1)
instead of a padded translation, and FixMatch is scored with the trained weights rather than an EMA of them.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from transformers import AutoModelForImageClassification
from transformers.utils import ModelOutput

from hfssl.data.config import ImageDataConfig
from hfssl.data.images import PixelDataset, collate_images, read_labels, read_pixels
from hfssl.data.training import TrainingData
from hfssl.evaluation.features import match_channels
from hfssl.evaluation.finetune import (
    MODEL_FOLDER, ClassifierResult, ClassifierSource, FineTuneConfig, FineTuneForImageClassification, INITS,
    check_crop_scale, check_label_fractions, check_length, check_output, classifier_config_from, save_classifier,
    score_classifier, shell_training, train_shell, unregistered_method,
)
from hfssl.evaluation.subsets import balanced_subset
from hfssl.losses.semi_supervised import masked_pseudo_label_loss, sigmoid_rampup, softmax_mse_consistency
from hfssl.recipe import EvalConfig, Recipe
from hfssl.registry import Paper
from hfssl.schedules import Schedule, constant
from hfssl.settings import RecipeError
from hfssl.views import SingleViewGenerator, ViewsConfig

logger = logging.getLogger(__name__)

PSEUDO_LABEL, MEAN_TEACHER, FIXMATCH = "pseudo-label", "mean-teacher", "fixmatch"
ALGORITHMS = (PSEUDO_LABEL, MEAN_TEACHER, FIXMATCH)
RESULT_FILE = "semi_supervised_result.json"


# ---- the training-time model -----------------------------------------------------------------------


class SemiSupervisedConfig(FineTuneConfig):
    """Config of the semi-supervised shell: :class:`FineTuneConfig` (the classifier, the starting encoder) and

    Args:
        algorithm: ``pseudo-label``, ``mean-teacher`` or ``fixmatch``.
        threshold: confidence ``tau`` in ``[0, 1]`` of a pseudo-label (Pseudo-Label, FixMatch).
        unlabelled_weight: ``lambda`` of the unlabelled loss (FixMatch's ``lambda_u``, Mean Teacher's
            consistency weight), ``>= 0``.
        rampup_ratio: share of training in ``[0, 1)`` over which the unlabelled weight ramps up from 0 (linear
            for Pseudo-Label, sigmoid for Mean Teacher, FixMatch: 0, no ramp-up).
        teacher_momentum: Mean Teacher's EMA rate alpha in ``[0, 1)``.
    """

    model_type = "hfssl_semi_supervised"

    def __init__(self, algorithm: str = FIXMATCH, threshold: float = 0.95, unlabelled_weight: float = 1.0,
                 rampup_ratio: float = 0.0, teacher_momentum: float = 0.99, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if unlabelled_weight < 0:
            raise ValueError(f"unlabelled_weight must be >= 0, got {unlabelled_weight}")
        if not 0.0 <= rampup_ratio < 1.0:
            raise ValueError(f"rampup_ratio must be in [0, 1), got {rampup_ratio}")
        if not 0.0 <= teacher_momentum < 1.0:
            raise ValueError(f"teacher_momentum must be in [0, 1), got {teacher_momentum}")
        self.algorithm = algorithm
        self.threshold = threshold
        self.unlabelled_weight = unlabelled_weight
        self.rampup_ratio = rampup_ratio
        self.teacher_momentum = teacher_momentum


@dataclass
class SemiSupervisedOutput(ModelOutput):
    """``loss`` = ``supervised_loss + lambda w(t) unlabelled_loss``; ``logits`` of the labelled rows ``(B, K)``;
    ``mask_rate``: share of unlabelled rows above the threshold (Pseudo-Label, FixMatch)."""

    loss: torch.Tensor | None = None
    supervised_loss: torch.Tensor | None = None
    unlabelled_loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    mask_rate: torch.Tensor | None = None


def _rampup_schedule(ratio: float) -> Schedule:
    """0 -> 1 linearly over the first ``ratio`` of training, then 1 (constant 1 without a ramp-up)."""
    return constant(1.0) if ratio <= 0 else Schedule(start=1.0, warmup_start=0.0, warmup_fraction=ratio)


class SemiSupervisedForImageClassification(FineTuneForImageClassification):
    """A transformers ``*ForImageClassification`` (``self.classifier``) trained on labelled and unlabelled
    images; Mean Teacher adds ``self.teacher``, its EMA copy. See the module docstring."""

    config_class = SemiSupervisedConfig
    base_model_prefix = "semi_supervised"

    def __init__(self, config: SemiSupervisedConfig) -> None:
        super().__init__(config)
        #: The unlabelled loss's ramp-up progress in [0, 1] of the current step (set by on_train_step_start).
        self.rampup_progress = 1.0
        if config.algorithm == MEAN_TEACHER:
            self.teacher = AutoModelForImageClassification.from_config(classifier_config_from(config.classifier_config))
            self.teacher_pairs = (("teacher", "classifier"),)
            self.copy_student_to_teacher()
            self.freeze_teachers()

    def schedules(self) -> dict[str, Schedule]:
        scheduled = {"unlabelled_rampup": _rampup_schedule(self.config.rampup_ratio)}
        if self.config.algorithm == MEAN_TEACHER:
            scheduled["teacher_momentum"] = constant(self.config.teacher_momentum)
        return scheduled

    @classmethod
    def schedule_names(cls, config: Any) -> tuple[str, ...]:
        return ("unlabelled_rampup",) + (("teacher_momentum",) if config.algorithm == MEAN_TEACHER else ())

    def on_train_step_start(self, step: int, scheduled: dict[str, float]) -> None:
        self.rampup_progress = float(scheduled["unlabelled_rampup"])

    def unlabelled_weight(self) -> float:
        """``lambda w(t)``: the ramp-up is sigmoid for Mean Teacher, linear otherwise."""
        ramp = sigmoid_rampup(self.rampup_progress) if self.config.algorithm == MEAN_TEACHER else self.rampup_progress
        return float(self.config.unlabelled_weight) * ramp

    def scored_classifier(self, teacher: bool = True) -> nn.Module:
        """The classifier that is scored and exported: Mean Teacher's EMA teacher (when asked), else the classifier."""
        if self.config.algorithm == MEAN_TEACHER and teacher:
            return self.teacher
        return self.classifier

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor, unlabelled_pixel_values: torch.Tensor,
                strong_pixel_values: torch.Tensor | None = None,
                teacher_pixel_values: torch.Tensor | None = None) -> SemiSupervisedOutput:
        """One step's loss.

        Args:
            pixel_values: ``(B, C, S, S)`` weak views of the labelled images; labels: ``(B,)``.
            unlabelled_pixel_values: ``(U, C, S, S)`` weak views of the unlabelled images (``U = mu B``).
            strong_pixel_values: ``(U, C, S, S)`` their strong views (FixMatch).
            teacher_pixel_values: ``(B + U, C, S, S)`` the teacher's views of the labelled then unlabelled
                images (Mean Teacher).
        """
        algorithm = self.config.algorithm
        needed = {FIXMATCH: ("strong_pixel_values", strong_pixel_values),
                  MEAN_TEACHER: ("teacher_pixel_values", teacher_pixel_values)}.get(algorithm)
        if needed is not None and needed[1] is None:
            raise ValueError(f"{algorithm} needs {needed[0]} (built by the protocol's input builder)")
        labelled, unlabelled = pixel_values.shape[0], unlabelled_pixel_values.shape[0]
        batch = [pixel_values, unlabelled_pixel_values] + ([strong_pixel_values] if algorithm == FIXMATCH else [])
        logits = self.classifier(pixel_values=torch.cat(batch)).logits
        mask_rate = None
        if algorithm == MEAN_TEACHER:
            with torch.no_grad():
                teacher_logits = self.teacher(pixel_values=teacher_pixel_values).logits
            unlabelled_loss = softmax_mse_consistency(logits, teacher_logits)
        else:
            weak = logits[labelled:labelled + unlabelled]
            target = weak if algorithm == PSEUDO_LABEL else logits[labelled + unlabelled:]
            pseudo = masked_pseudo_label_loss(weak, target, self.config.threshold)
            unlabelled_loss, mask_rate = pseudo.loss, pseudo.mask.mean()
        supervised_loss = nn.functional.cross_entropy(logits[:labelled].float(), labels)
        loss = supervised_loss + self.unlabelled_weight() * unlabelled_loss
        return SemiSupervisedOutput(loss=loss, supervised_loss=supervised_loss.detach(),
                                    unlabelled_loss=unlabelled_loss.detach(), logits=logits[:labelled],
                                    mask_rate=mask_rate)


SEMI_SUPERVISED_SPEC, SemiSupervisedRecipe = unregistered_method(
    "semi_supervised", SemiSupervisedConfig, SemiSupervisedForImageClassification, "semi-supervised classification",
    Paper(title="FixMatch: Simplifying Semi-Supervised Learning with Consistency and Confidence",
          url="https://arxiv.org/abs/2001.07685", bibtex=""),
    "SemiSupervisedRecipe")


# ---- inputs ----------------------------------------------------------------------------------------------------


def labelled_indices(count: int, batch: int, generator: torch.Generator) -> torch.Tensor:
    """``batch`` indices into ``count`` labelled rows, without replacement inside the step (permutations
    concatenated when ``batch > count``), drawn from the step's generator."""
    rounds = math.ceil(batch / count)
    return torch.cat([torch.randperm(count, generator=generator, device=generator.device)
                      for _ in range(rounds)])[:batch]


class SemiSupervisedInputs:
    """``make_inputs``: the engine's unlabelled batch + ``labelled_batch`` labelled rows drawn on the device.

    The labelled subset lives on the training device as uint8 ``(L, C, H, W)`` (copied once per device), so the
    labelled draw and every view are functions of the step's generator: a resumed run sees the same inputs.
    """

    def __init__(self, algorithm: str, pixels: torch.Tensor, labels: torch.Tensor, labelled_batch: int,
                 weak: SingleViewGenerator, strong: SingleViewGenerator | None, channels: int) -> None:
        self.algorithm = algorithm
        self.pixels, self.labels = pixels, labels
        self.labelled_batch = labelled_batch
        self.weak, self.strong, self.channels = weak, strong, channels

    def __call__(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
        device = torch.device(generator.device)
        if self.pixels.device != device:
            self.pixels, self.labels = self.pixels.to(device), self.labels.to(device)
        unlabelled = match_channels(batch["pixels"].to(device), self.channels)
        index = labelled_indices(len(self.labels), self.labelled_batch, generator)
        labelled = self.pixels[index]
        inputs = {"pixel_values": self.weak(labelled, generator)["pixel_values"], "labels": self.labels[index],
                  "unlabelled_pixel_values": self.weak(unlabelled, generator)["pixel_values"]}
        if self.algorithm == FIXMATCH:
            inputs["strong_pixel_values"] = self.strong(unlabelled, generator)["pixel_values"]
        if self.algorithm == MEAN_TEACHER:
            inputs["teacher_pixel_values"] = self.weak(torch.cat([labelled, unlabelled]), generator)["pixel_values"]
        return inputs


# ---- settings ----------------------------------------------------------------------------------------------------


@dataclass
class SemiSupervisedSettings:
    """``eval.<protocol>`` of the semi-supervised protocols (see the module docstring).

    ``batch_size``: labelled images per step (``B``); ``unlabelled_ratio``: ``mu``, unlabelled images per
    labelled one. ``epochs`` count passes over the unlabelled (whole training) split; ``max_steps`` wins when
    set. ``init``: ``pretrained`` (the encoder's weights) or ``random`` (its architecture from scratch).
    ``output_dir``: where the runs go (``<dir>/<label fraction>/model`` is the classifier); by default
    ``RUN/<protocol>`` for an hfssl run, else ``<protocol>-<encoder folder name>`` in the working directory.
    ``resume``: continue an interrupted run from its newest checkpoint (exact).
    """

    algorithm: ClassVar[str] = ""

    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 64
    unlabelled_ratio: int = 7
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_ratio: float = 0.05
    unlabelled_weight: float = 1.0
    crop_scale: tuple[float, float] = (0.8, 1.0)
    flip_prob: float = 0.5
    label_fractions: tuple[float, ...] = (0.1,)
    init: str = "pretrained"
    seed: int = 0
    mixed_precision: str | None = None
    checkpoint_every: int = 500
    output_dir: str | None = None
    resume: bool = False

    def where(self, key: str) -> str:
        return f"eval.{self.algorithm}.{key}"

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise RecipeError(f"{self.where('init')} must be one of {', '.join(INITS)}, got {self.init!r}")
        check_length(f"eval.{self.algorithm}", self.epochs, self.max_steps)
        if self.batch_size < 1 or self.unlabelled_ratio < 1:
            raise RecipeError(f"{self.where('batch_size')} and {self.where('unlabelled_ratio')} must be >= 1, got "
                              f"{self.batch_size!r} and {self.unlabelled_ratio!r}")
        if self.lr <= 0 or self.weight_decay < 0 or self.unlabelled_weight < 0:
            raise RecipeError(f"eval.{self.algorithm}: lr must be > 0, weight_decay and unlabelled_weight >= 0, got "
                              f"{self.lr!r}, {self.weight_decay!r}, {self.unlabelled_weight!r}")
        if not self.label_fractions:
            raise RecipeError(f"{self.where('label_fractions')} must list at least one fraction (0.01 for 1 %)")
        check_label_fractions(self.where("label_fractions"), self.label_fractions)
        check_crop_scale(f"eval.{self.algorithm}", self.crop_scale)
        try:
            SemiSupervisedConfig(**self.model_settings())
        except ValueError as error:
            raise RecipeError(f"eval.{self.algorithm}: {error}") from None

    def model_settings(self) -> dict[str, Any]:
        """The :class:`SemiSupervisedConfig` values these settings give."""
        return {"algorithm": self.algorithm, "unlabelled_weight": self.unlabelled_weight}

    def strong_views(self, weak: ViewsConfig) -> ViewsConfig | None:
        """The strong view's settings (FixMatch), or ``None``."""
        return None

    def scores_teacher(self) -> bool:
        """Whether the EMA teacher (Mean Teacher) is scored and exported instead of the classifier."""
        return False

    def row_settings(self) -> dict[str, Any]:
        """The settings recorded in every result row (with the label fraction and the seed)."""
        return {"init": self.init, "seed": self.seed, "epochs": self.epochs if self.max_steps is None else None,
                "max_steps": self.max_steps, "batch_size": self.batch_size, "unlabelled_ratio": self.unlabelled_ratio,
                "lr": self.lr, **{key: value for key, value in self.model_settings().items() if key != "algorithm"}}


@dataclass
class PseudoLabelSettings(SemiSupervisedSettings):
    """``eval.pseudo-label``: ``threshold`` (0.95, as FixMatch's re-implementation) and a linear ramp-up of the
    unlabelled weight over ``rampup_ratio`` of training (Lee 2013's alpha(t); 0.4 as TorchSSL / USB)."""

    algorithm: ClassVar[str] = PSEUDO_LABEL

    threshold: float = 0.95
    rampup_ratio: float = 0.4

    def model_settings(self) -> dict[str, Any]:
        return {**super().model_settings(), "threshold": self.threshold, "rampup_ratio": self.rampup_ratio}


@dataclass
class MeanTeacherSettings(SemiSupervisedSettings):
    """``eval.mean-teacher``: consistency weight ``unlabelled_weight`` (50 with the mean over classes, as
    TorchSSL / USB; the paper's 100 on CIFAR-10 with its sum over classes / 10 is the same scale), the sigmoid
    ramp-up over ``rampup_ratio`` of training, the EMA rate ``teacher_momentum`` (0.99), and whether the EMA
    teacher (default) or the student is scored and exported. ``unlabelled_ratio`` defaults to 1."""

    algorithm: ClassVar[str] = MEAN_TEACHER

    unlabelled_ratio: int = 1
    unlabelled_weight: float = 50.0
    rampup_ratio: float = 0.4
    teacher_momentum: float = 0.99
    evaluate_teacher: bool = True

    def model_settings(self) -> dict[str, Any]:
        return {**super().model_settings(), "rampup_ratio": self.rampup_ratio,
                "teacher_momentum": self.teacher_momentum}

    def scores_teacher(self) -> bool:
        return self.evaluate_teacher

    def row_settings(self) -> dict[str, Any]:
        return {**super().row_settings(), "evaluate_teacher": self.evaluate_teacher}


@dataclass
class FixMatchSettings(SemiSupervisedSettings):
    """``eval.fixmatch``: ``threshold`` tau (0.95), ``unlabelled_ratio`` mu (7), ``unlabelled_weight`` lambda_u
    (1), and the strong view: ``randaugment_num_ops`` (2) operations with ``randaugment_magnitude`` (null: random
    per operation, as the paper) and Cutout of ``cutout_fraction`` (0.5) of the side."""

    algorithm: ClassVar[str] = FIXMATCH

    threshold: float = 0.95
    randaugment_num_ops: int = 2
    randaugment_magnitude: float | None = None
    cutout_fraction: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        self.strong_views(ViewsConfig(num_views=1))  # RandAugment's own checks, named views.*

    def model_settings(self) -> dict[str, Any]:
        return {**super().model_settings(), "threshold": self.threshold}

    def strong_views(self, weak: ViewsConfig) -> ViewsConfig | None:
        return replace(weak, randaugment_num_ops=self.randaugment_num_ops,
                       randaugment_magnitude=self.randaugment_magnitude, cutout_fraction=self.cutout_fraction)


# ---- the run -------------------------------------------------------------------------------------------------------


@dataclass
class SemiSupervisedResult(ClassifierResult):
    """What :func:`semi_supervised` leaves: the result row, test predictions, where the classifier is."""


def semi_supervised(encoder: str, train_dataset: Any, test_dataset: Any, label_names: list[str] | None,
                    num_classes: int, settings: SemiSupervisedSettings, output_dir: str | Path,
                    label_fraction: float, data_config: ImageDataConfig | None = None) -> SemiSupervisedResult:
    """Train ``settings.algorithm`` from ``encoder`` on a label fraction of ``train_dataset`` and all its images.

    Args:
        encoder: a transformers vision encoder folder or Hub id with its image processor (``init: random``
            takes its architecture only).
        train_dataset / test_dataset: prepared splits (``pixels`` uint8 ``(C, H, W)``, ``label``); every image of
            ``train_dataset`` is an unlabelled image, the class-balanced seeded ``label_fraction`` of it the
            labelled ones.
        label_names: class names (``id2label``), or ``None``. settings: the protocol's settings.
        output_dir: the run folder (checkpoints, logs, ``model/``: the plain classifier).
        data_config: the data's section, recorded in the run's recipe.

    Returns:
        :class:`SemiSupervisedResult` with the row ``{label_fraction, seed, num_labelled, num_unlabelled, top1,
        top5, ...settings}``.
    """
    output_dir = Path(output_dir)
    check_output(output_dir, SemiSupervisedConfig.model_type, settings.where("output_dir"), "semi-supervised")
    source = ClassifierSource.load(encoder, train_dataset)
    channels = source.channels
    subset = balanced_subset(read_labels(train_dataset), label_fraction, settings.seed)
    labelled_dataset = train_dataset.select(subset.tolist())
    pixels = match_channels(torch.from_numpy(read_pixels(labelled_dataset)), channels).contiguous()
    labels = torch.from_numpy(read_labels(labelled_dataset))
    unlabelled_batch = min(settings.batch_size * settings.unlabelled_ratio, len(train_dataset))
    weak = ViewsConfig(num_views=1, crop_size=source.image_size, crop_scale=tuple(settings.crop_scale),
                       flip_prob=settings.flip_prob, mean=source.mean, std=source.std)
    strong = settings.strong_views(weak)
    recipe = SemiSupervisedRecipe(
        method=SEMI_SUPERVISED_SPEC.name,
        model={"classifier_config": source.classifier_config(label_names, num_classes), **settings.model_settings(),
               "backbone_name_or_path": str(encoder) if settings.init == "pretrained" else None},
        data=data_config or ImageDataConfig(source="in-memory"), views=weak,
        **shell_training(settings, unlabelled_batch),
        eval=EvalConfig(protocols=(), baselines=False, settings={settings.algorithm: {
            **asdict(settings), "label_fractions": [label_fraction]}}),
    )
    make_inputs = SemiSupervisedInputs(
        settings.algorithm, pixels, labels, settings.batch_size, SingleViewGenerator(weak, source.data_size, channels),
        SingleViewGenerator(strong, source.data_size, channels) if strong is not None else None, channels)

    def build_data(recipe: Recipe, accelerator: Any) -> TrainingData:
        return TrainingData(train_dataset=PixelDataset(train_dataset), collate_fn=collate_images,
                            make_inputs=make_inputs, label_names=label_names)

    logger.info("%s from %s (%s) on %d labelled (label fraction %g) and %d unlabelled rows into %s",
                settings.algorithm, encoder, settings.init, len(labels), label_fraction, len(train_dataset), output_dir)
    result = train_shell(recipe, output_dir, build_data, settings.resume)
    model = result.model.eval()
    classifier = model.scored_classifier(settings.scores_teacher())
    scores, test_labels, accuracies = score_classifier(classifier, weak, source.image_size, channels, test_dataset)
    model_dir = save_classifier(classifier, source.processor, output_dir / MODEL_FOLDER)
    row = {"label_fraction": label_fraction, "num_labelled": len(labels), "num_unlabelled": len(train_dataset),
           **settings.row_settings(), "steps": result.steps, **accuracies}
    row = {key: value for key, value in row.items() if value is not None}
    (output_dir / RESULT_FILE).write_text(json.dumps(row, indent=2) + "\n")
    logger.info("%s: test top-1 %.4f top-5 %.4f (%s)", settings.algorithm, accuracies["top1"], accuracies["top5"],
                model_dir)
    return SemiSupervisedResult(row, scores.argmax(axis=1), test_labels, model_dir, result.steps)


def run_label_fractions(context: Any, settings: SemiSupervisedSettings, encoder: str,
                        base: Path) -> list[SemiSupervisedResult]:
    """One run per label fraction of the evaluated encoder (an :class:`EvaluationContext`'s), each in
    ``base/fraction-<f>[-random]`` (``all-labels`` for 1)."""
    splits = context.image_splits()
    data_config = context.data_config if isinstance(context.data_config, ImageDataConfig) else None
    results = []
    for fraction in settings.label_fractions:
        folder = ("all-labels" if fraction >= 1.0 else f"fraction-{fraction:g}") + (
            "" if settings.init == "pretrained" else f"-{settings.init}")
        results.append(semi_supervised(encoder, splits.train, splits.test, splits.label_names, context.num_classes,
                                       settings, base / folder, fraction, data_config))
    return results
