"""The base class of every hfssl model, and the contract the training engine relies on.

Every hfssl model is a thin training-time shell (heads, teacher, loss) around a *transferable part*
that is a plain transformers model, kept at ``self.backbone``. The engine only ever uses:

* ``forward(**inputs) -> ModelOutput`` whose first field is ``loss`` and whose other ``*_loss``
  (and ``*_accuracy``) fields are logged. ``inputs`` is what the method's input builder produced.
* ``get_backbone()`` / ``export_backbone()`` -> the plain transformers model that export writes.
* ``get_embeddings(...)`` -> pooled ``(batch, hidden)`` features for kNN, probes and monitors;
  ``get_layer_embeddings(pixel_values)`` -> one pooled ``(batch, width_i)`` per stage / block.
* The per-step hooks below.

Per-step hooks (all optional; the defaults give BYOL-style EMA teachers):

* :meth:`schedules` declares scheduled scalars (:class:`hfssl.schedules.Schedule`) by name; a
  recipe overrides them under ``train.schedules``. The name ``weight_decay`` is special: the
  engine applies it to the optimiser's decayed parameter groups at every step (DINO).
  :meth:`schedule_names` (a classmethod of the config) names them without building a model, so a
  recipe's ``train.schedules`` is checked when it is loaded; a model that overrides
  :meth:`schedules` overrides it too (the engine refuses a model whose two answers differ).
* :meth:`parameter_groups` declares named parameter groups with their own learning-rate rule
  (:class:`ParameterGroup`: a scale, a constant rate, weight decay on or off), which a recipe
  overrides under ``optim.parameter_groups.<name>`` (SimSiam's constant predictor rate, Barlow
  Twins' bias and BatchNorm rate); :meth:`parameter_lr_scales` scales single parameters (layer-wise
  decay when fine-tuning).
* :meth:`on_train_step_start` runs before the forward pass of every micro-batch with the scheduled
  values of the optimiser step it belongs to (a scheduled temperature used inside ``forward``), and
  under ``"lr"`` that step's learning rate (word2vec's kernel applies it in place);
* :meth:`on_train_step_end` runs after every optimiser step with that step's scheduled values
  (EMA teacher updates, queue or centre updates that need the step).
* :meth:`parameter_freezes` lists parameters whose updates are skipped for the first steps of
  training (DINO's last layer, SwAV's prototypes during the first epoch).
* :attr:`training_state` names buffers that only training needs (a negative queue, a centre). They
  are registered with ``persistent=False``, so ``save_pretrained`` leaves them out of the released
  model and its parameter count; the engine saves them with every checkpoint and restores them on
  resume (:meth:`training_state_dict` / :meth:`load_training_state_dict`). :meth:`reset_training_state`
  gives them their starting values, also after ``from_pretrained`` (which leaves non-persistent
  buffers uninitialised).

What a model needs from a step in ``on_train_step_end`` (the keys a queue takes in) it keeps from
its own ``forward`` of that step: checkpoints are written after the hook, so nothing kept between
the two is ever lost or saved twice.

Frozen external teachers (feature distillation, SimCLRv2's distillation): :meth:`add_frozen_teacher` builds
a module from its config (on the CPU, so also under ``from_pretrained``'s meta-device construction), freezes
it and keeps it in eval mode (:meth:`train`), and keeps its weights out of ``state_dict``: out of
``model.safetensors``, of every checkpoint and of every export. The config names where the weights come from
(a folder, a Hub id, a run's ``encoder/``) and the model's :meth:`load_pretrained_weights` loads them when a
run starts or resumes; ``from_pretrained`` of the full model builds the teacher from its config alone.

Pretrained weights: the engine calls :meth:`load_pretrained_weights` once when a run starts; by
default it copies ``config.backbone_name_or_path`` into :meth:`get_backbone` through
:meth:`load_pretrained_backbone` and the teachers; MLM and CLIP load their own parts.

Every hook is declared here with its default, and the engine calls it directly: shared code never
asks ``hasattr`` whether a model has one.

No ``.backward()`` inside a model, no augmentation inside a model, no parameter created lazily.

Publishing (``model.push_to_hub``) is provided by the hub layer, which installs its handler with
:func:`set_push_handler` when :mod:`hfssl` is imported: models never import the hub.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PreTrainedModel

from hfssl.backbones import layer_features, pool_features
from hfssl.backbones import load_pretrained_backbone as load_pretrained_encoder
from hfssl.reconstruction import Reconstruction
from hfssl.registry import CAPABILITIES
from hfssl.schedules import Schedule, cosine

_push_handler: Callable[..., dict[str, str]] | None = None

#: Files whose presence means a folder holds a saved tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def set_push_handler(handler: Callable[..., dict[str, str]]) -> None:
    """Install the function behind ``HfsslPreTrainedModel.push_to_hub`` (done by :mod:`hfssl.hub`)."""
    global _push_handler
    _push_handler = handler


@dataclass(frozen=True)
class Freeze:
    """Skip the updates of parameters matching ``pattern`` (``fnmatch`` on parameter names) for the
    first ``steps`` optimiser steps, or the first ``epochs`` epochs (DINO freezes its last layer for one)."""

    pattern: str
    steps: int | None = None
    epochs: float | None = None
    #: The recipe key that sets the length (``model.freeze_last_layer_epochs``), named when it covers the whole run.
    key: str | None = None

    def __post_init__(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(f"Freeze({self.pattern!r}) needs exactly one of steps and epochs")

    def length(self, steps_per_epoch: int | None) -> int:
        """The number of frozen steps (epochs need a known epoch length)."""
        if self.steps is not None:
            return self.steps
        if steps_per_epoch is None:
            raise ValueError(f"Freeze({self.pattern!r}, epochs={self.epochs}) needs a known epoch length; "
                             "streamed data has none: give the freeze in steps")
        return int(round(float(self.epochs) * steps_per_epoch))

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.pattern)


@dataclass(frozen=True)
class ParameterGroup:
    """Named parameters with their own learning-rate rule (declared by
    :meth:`HfsslPreTrainedModel.parameter_groups`, consumed by :mod:`hfssl.training.optim`).

    Args:
        name: the group's name: ``optim.parameter_groups.<name>`` in a recipe, ``lr/<name>`` in the logs.
        parameters: the names (``model.named_parameters()``) of the parameters in the group; a
            parameter may belong to one declared group at most; the others form the default group.
        lr_scale: the group's peak learning rate is ``optim.lr * lr_scale`` (Barlow Twins' biases and
            BatchNorm: 0.0048 / 0.2).
        constant_lr: the rate follows the warm-up and then stays at its peak instead of following
            ``optim.schedule`` (SimSiam's predictor, sec. 4.5).
        weight_decay: ``None`` keeps the engine's rule (``optim.exclude_bias_and_norm``); ``False``
            never decays the group (nor scales it by LARS' trust ratio); ``True`` always decays it.
    """

    name: str
    parameters: tuple[str, ...]
    lr_scale: float = 1.0
    constant_lr: bool = False
    weight_decay: bool | None = None

    def __post_init__(self) -> None:
        if not self.name or self.name == "default":
            raise ValueError(f"ParameterGroup: a group needs a name other than 'default', got {self.name!r}")
        if not self.lr_scale >= 0:
            raise ValueError(f"ParameterGroup({self.name!r}): lr_scale must be >= 0, got {self.lr_scale!r}")


class HfsslPreTrainedModel(PreTrainedModel):
    """Shared behaviour: weight init of hfssl's own modules, EMA teachers, per-step hooks, export contract."""

    base_model_prefix = "hfssl"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False
    #: (teacher attribute, student attribute) pairs updated by :meth:`update_teacher`.
    teacher_pairs: tuple[tuple[str, str], ...] = ()
    #: Names of non-persistent buffers that are training-only state (checkpointed, not released).
    training_state: tuple[str, ...] = ()
    #: Submodules added by :meth:`add_frozen_teacher` (frozen, eval mode, never in ``state_dict``).
    frozen_teachers: tuple[str, ...] = ()

    def _init_weights(self, module: nn.Module) -> None:
        # hfssl's heads use PyTorch's default initialisation (as in the reference implementations
        # of SimCLR/BYOL in PyTorch); backbones keep their own transformers initialisation, which
        # transformers dispatches to the backbone's own _init_weights.
        if isinstance(module, (nn.Linear, nn.BatchNorm1d, nn.LayerNorm, nn.Conv2d)) and hasattr(
            module, "reset_parameters"
        ):
            module.reset_parameters()
        if module is self and self.training_state:
            # transformers fills non-persistent buffers with uninitialised memory when it loads a
            # checkpoint; training-only state gets its starting values here instead.
            self.reset_training_state()

    # ---- the transferable part -----------------------------------------------------------------

    def get_backbone(self) -> PreTrainedModel:
        """Return the transferable plain-transformers model (saved to ``encoder/`` on export)."""
        return self.backbone

    def export_backbone(self) -> PreTrainedModel:
        """The model export writes: :meth:`get_backbone` unless the released model differs (MAE converts its
        encoder to a ``ViTModel``; MLM releases a ``BertForMaskedLM``)."""
        return self.get_backbone()

    def get_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features ``(B, hidden)`` of images ``(B, C, H, W)`` (``config.pooling``, see
        :func:`hfssl.backbones.pool_features`). Models whose transferable part is not an image
        backbone called this way (MAE, word2vec) override it."""
        return pool_features(self.backbone(pixel_values=pixel_values), self.config.pooling)

    def get_layer_embeddings(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Pooled features of every stage (ResNet, ConvNeXt) or block (ViT) of the backbone on images
        ``(B, C, H, W)``: a list of ``(B, width_i)``, first to last, the stem left out; the last entry
        equals :meth:`get_embeddings` (see :func:`hfssl.backbones.pool_hidden_states`). The capability
        ``layer-features``. Models whose transferable part is not an image backbone called this way
        override it (MAE) or do not serve it (word2vec, MLM, CLIP)."""
        return layer_features(self.backbone, pixel_values, self.config.pooling)

    # ---- capabilities: what evaluation and `hfssl embed` can ask for (hfssl.registry.CAPABILITIES) ----
    # A method lists the capabilities it serves in ``MethodSpec.provides``; each one is a method here,
    # with a default that says the model does not serve it.

    def _not_served(self, capability: str) -> NotImplementedError:
        return NotImplementedError(f"{type(self).__name__} does not serve {capability!r}; override "
                                   f"{type(self).__name__}.{CAPABILITIES[capability].accessor} and list it in its "
                                   "MethodSpec.provides")

    def get_tokenizer(self, folder: str | Path | None = None) -> Any | None:
        """The tokenizer saved with this model: in ``folder`` (a run directory: training saves the data's
        tokenizer beside the model) or else in the folder the model was loaded from; ``None`` when
        neither holds one (image models)."""
        from transformers import AutoTokenizer

        for candidate in (folder, self.name_or_path or None):
            if candidate is not None and any((Path(candidate) / name).is_file() for name in TOKENIZER_FILES):
                return AutoTokenizer.from_pretrained(candidate)
        return None

    def get_masked_lm(self) -> PreTrainedModel:
        """``masked-lm``: the transferable masked language model (encoder + MLM head); its tokenizer is
        :meth:`get_tokenizer`."""
        raise self._not_served("masked-lm")

    def get_text_encoder(self) -> PreTrainedModel:
        """``text-features``: the transferable text encoder (a transformers model whose output has
        ``last_hidden_state``; protocols pool its token states); its tokenizer is :meth:`get_tokenizer`."""
        raise self._not_served("text-features")

    def get_causal_lm(self) -> PreTrainedModel:
        """``causal-lm``: the transferable causal (next-token) language model; its tokenizer is :meth:`get_tokenizer`."""
        raise self._not_served("causal-lm")

    def get_dual_encoder(self, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                         channels: int) -> tuple[PreTrainedModel, Any]:
        """``image-text-embeddings``: the transferable dual encoder and its processor for images of
        ``image_size`` px normalised with ``mean`` / ``std``."""
        raise self._not_served("image-text-embeddings")

    def get_word_vectors(self) -> tuple[list[str], torch.Tensor]:
        """``word-vectors``: the trained words, most frequent first, and their vectors ``(V, d)`` on the CPU."""
        raise self._not_served("word-vectors")

    def get_pretext_predictions(self, pixel_values: torch.Tensor,
                                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``pretext-task``: the pretext task built from clean, normalised images ``(B, C, H, W)`` with
        ``generator`` (the same builder as training, so a fixed seed gives a fixed task), and the model's
        ``(logits (N, classes), labels (N,))`` on it; ``N`` may exceed ``B`` (RotNet shows each image at four
        rotations)."""
        raise self._not_served("pretext-task")

    def get_reconstructions(self, pixel_values: torch.Tensor, generator: torch.Generator) -> Reconstruction:
        """``reconstruction``: the model's corruption of clean, normalised images ``(B, C, H, W)`` (any randomness
        drawn from ``generator``, as in training) and its reconstruction, as a
        :class:`~hfssl.reconstruction.Reconstruction` (original, corrupted, reconstructed, optional loss mask)."""
        raise self._not_served("reconstruction")

    def project_views(self, pixel_values: torch.Tensor, head: nn.Module) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Two views ``(B, 2, C, H, W)`` through the backbone in one pass and then ``head``.

        Returns:
            the backbone features ``(2B, hidden)`` (view-major: view 1 of every image, then view 2),
            and the head's outputs of view 1 and of view 2, ``(B, out)`` each.
        """
        batch_size = pixel_values.shape[0]
        features = self.get_embeddings(self.flatten_views(pixel_values))  # (2B, hidden)
        projections = head(features)  # (2B, out)
        return features, projections[:batch_size], projections[batch_size:]

    def flatten_views(self, pixel_values: torch.Tensor, num_views: int = 2) -> torch.Tensor:
        """Check ``(B, V, C, H, W)`` multi-view input and flatten it view-major to ``(V * B, C, H, W)``,
        so that all views share one backbone pass and BatchNorm sees the whole batch; view ``v``
        of image ``i`` lands at row ``v * B + i``."""
        if pixel_values.ndim != 5 or pixel_values.shape[1] != num_views:
            raise ValueError(
                f"{type(self).__name__} expects pixel_values of shape (batch, {num_views} views, channels, height, "
                f"width), got {tuple(pixel_values.shape)}; set views.num_views={num_views}"
            )
        return pixel_values.transpose(0, 1).reshape(-1, *pixel_values.shape[2:])

    # ---- teachers --------------------------------------------------------------------------------

    def freeze_teachers(self) -> None:
        """Teachers never receive gradients: call at the end of ``__init__``."""
        for teacher_name, _ in self.teacher_pairs:
            getattr(self, teacher_name).requires_grad_(False)

    def add_frozen_teacher(self, name: str, build: Callable[[], nn.Module]) -> nn.Module:
        """Register ``build()`` as the frozen external teacher ``self.<name>`` (see the module docstring):
        built on the CPU, ``requires_grad`` off (so never in the optimiser), in eval mode, and left out of
        ``state_dict`` (so out of saved models, checkpoints and exports; ``load_state_dict`` does not ask
        for it). Call in ``__init__`` before ``post_init``; ``name`` must be listed in :attr:`frozen_teachers`."""
        if name not in self.frozen_teachers:
            raise ValueError(f"{type(self).__name__}.frozen_teachers must list {name!r} to add it as a frozen teacher")
        with torch.device("cpu"):  # real weights even under from_pretrained's meta-device construction
            teacher = build()
        teacher.requires_grad_(False)
        teacher.eval()
        setattr(self, name, teacher)
        if _drop_frozen_teachers not in self._state_dict_hooks.values():
            self._register_state_dict_hook(_drop_frozen_teachers)
            self.register_load_state_dict_post_hook(_allow_missing_frozen_teachers)
        return teacher

    def train(self, mode: bool = True) -> HfsslPreTrainedModel:
        """As ``nn.Module.train``, but frozen teachers (:meth:`add_frozen_teacher`) stay in eval mode."""
        super().train(mode)
        for name in self.frozen_teachers:
            getattr(self, name).eval()
        return self

    def copy_student_to_teacher(self) -> None:
        for teacher_name, student_name in self.teacher_pairs:
            getattr(self, teacher_name).load_state_dict(getattr(self, student_name).state_dict())

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA update ``teacher = momentum * teacher + (1 - momentum) * student``; buffers are copied."""
        for teacher_name, student_name in self.teacher_pairs:
            teacher, student = getattr(self, teacher_name), getattr(self, student_name)
            teacher_params = list(teacher.parameters())
            student_params = list(student.parameters())
            torch._foreach_lerp_(teacher_params, student_params, 1.0 - momentum)
            for teacher_buffer, student_buffer in zip(teacher.buffers(), student.buffers()):
                teacher_buffer.copy_(student_buffer)

    def teacher_parameter_names(self) -> set[str]:
        """Names of the parameters of the EMA teachers and of the frozen teachers: never trained."""
        names = {f"{name}.{parameter}" for name in self.frozen_teachers
                 for parameter, _ in getattr(self, name).named_parameters()}
        for teacher_name, _ in self.teacher_pairs:
            names.update(f"{teacher_name}.{name}" for name, _ in getattr(self, teacher_name).named_parameters())
        return names

    # ---- per-step hooks --------------------------------------------------------------------------

    def schedules(self) -> dict[str, Schedule]:
        """Scalars the engine schedules for this model. Default: with a teacher and a
        ``config.teacher_momentum``, the EMA rate cosine from that value to 1 (BYOL sec. 3.2)."""
        momentum = getattr(self.config, "teacher_momentum", None)
        if self.teacher_pairs and momentum is not None:
            return {"teacher_momentum": cosine(float(momentum), 1.0)}
        return {}

    @classmethod
    def schedule_names(cls, config: Any) -> tuple[str, ...]:
        """The names :meth:`schedules` returns for a model of ``config``, known without building the
        model (``train.schedules`` is checked with them when a recipe is loaded). Default: the default
        :meth:`schedules`' ``teacher_momentum`` when the class has a teacher and the config a momentum."""
        if cls.teacher_pairs and getattr(config, "teacher_momentum", None) is not None:
            return ("teacher_momentum",)
        return ()

    def parameter_groups(self) -> list[ParameterGroup]:
        """Parameter groups with their own learning-rate rule (none by default: one rule for all)."""
        return []

    def parameter_lr_scales(self) -> dict[str, float]:
        """A learning-rate factor per parameter name (layer-wise decay when fine-tuning, as in MAE /
        BEiT); parameters not named keep 1. Default: none."""
        return {}

    def on_train_step_start(self, step: int, scheduled: dict[str, float]) -> None:
        """Called before each micro-batch's forward pass of optimiser step ``step`` (1-based) with that
        step's scheduled values; values a model keeps from here are recomputed on resume. Default: nothing."""

    def on_train_step_end(self, step: int, scheduled: dict[str, float]) -> None:
        """Called after optimiser step ``step`` (1-based) with the scheduled values of that step.
        Default: the EMA teacher update with ``scheduled["teacher_momentum"]``."""
        if self.teacher_pairs and "teacher_momentum" in scheduled:
            self.update_teacher(scheduled["teacher_momentum"])

    def parameter_freezes(self) -> list[Freeze]:
        """Parameters whose updates the engine skips during the first steps (none by default)."""
        return []

    # ---- pretrained weights ----------------------------------------------------------------------

    def load_pretrained_weights(self) -> list[str]:
        """Load the starting weights the config names (called by the engine when a run starts) and
        return what was loaded. Default: ``config.backbone_name_or_path`` (a local path, Hub id or
        ``builtin:<name>``) into the backbone through :meth:`load_pretrained_backbone`, then the
        teachers copy the students. MLM and CLIP override it (a head, two towers)."""
        path = getattr(self.config, "backbone_name_or_path", None)
        if not path:
            return []
        _, pretrained = load_pretrained_encoder(path)
        self.load_pretrained_backbone(pretrained)
        self.copy_student_to_teacher()
        return [path]

    def load_pretrained_backbone(self, pretrained: nn.Module) -> None:
        """Copy a loaded transformers encoder into :meth:`get_backbone` (strict by default; the
        fine-tuning shell accepts an unused pooler)."""
        self.get_backbone().load_state_dict(pretrained.state_dict())

    # ---- training-only state ---------------------------------------------------------------------

    @torch.no_grad()
    def reset_training_state(self) -> None:
        """Starting values of the :attr:`training_state` buffers (zeros by default; a queue may start random)."""
        for name in self.training_state:
            getattr(self, name).zero_()

    def training_state_dict(self) -> dict[str, torch.Tensor]:
        """The training-only buffers named in :attr:`training_state`, detached, on the CPU."""
        return {name: getattr(self, name).detach().cpu().clone() for name in self.training_state}

    def load_training_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`training_state_dict` exactly (shape and dtype checked)."""
        missing = [name for name in self.training_state if name not in state]
        if missing:
            raise ValueError(f"the checkpoint's training state lacks {missing} for {type(self).__name__}")
        for name in self.training_state:
            buffer = getattr(self, name)
            value = state[name]
            if value.shape != buffer.shape or value.dtype != buffer.dtype:
                raise ValueError(f"training state {name!r}: the checkpoint holds {tuple(value.shape)} {value.dtype}, "
                                 f"the model {tuple(buffer.shape)} {buffer.dtype}; the model config changed")
            buffer.copy_(value.to(buffer.device))

    # ---- publishing ------------------------------------------------------------------------------

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> dict[str, str]:  # type: ignore[override]
        """Publish this model as an hfssl repo: the full SSL model, the plain-transformers encoder,
        and (when the model was loaded from a run directory) its recipe, evaluation, pictures and
        a regenerated card. Keywords are those of :func:`hfssl.hub.push.push_run` (``private``,
        ``revision``, ``commit_message``, ``encoder_repo_id``, ``token``)."""
        if _push_handler is None:
            raise RuntimeError("publishing is set up by `import hfssl`; import hfssl before calling push_to_hub")
        return _push_handler(self, repo_id, **kwargs)


#: int64 words of :func:`weights_fingerprint` (a sha256).
FINGERPRINT_WORDS = 4


def weights_fingerprint(module: nn.Module) -> torch.Tensor:
    """A sha256 of a module's parameters and buffers (names, shapes, bytes) as ``FINGERPRINT_WORDS`` int64 words:
    a resume refuses a frozen teacher whose weights changed since its checkpoint."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return torch.frombuffer(bytearray(digest.digest()), dtype=torch.int64).clone()


def refuse_changed_teacher(state: dict[str, torch.Tensor], fingerprint: torch.Tensor, teacher: str | None,
                           remedy: str) -> None:
    """Refuse to resume with a frozen teacher whose weights changed since the checkpoint was written.

    Args:
        state: the checkpoint's training state; its ``teacher_fingerprint`` is the teacher's when it was written.
        fingerprint: :func:`weights_fingerprint` of the teacher loaded now (zeros before any is loaded: nothing
            to compare).
        teacher: where the teacher's weights come from, named in the error. remedy: the message's end, the fix.

    Raises:
        ValueError: both fingerprints are known and differ.
    """
    saved = state.get("teacher_fingerprint")
    current = fingerprint.detach().cpu()
    if saved is not None and bool(current.any()) and not torch.equal(saved.cpu(), current):
        raise ValueError(f"the teacher {teacher!r} holds other weights than when the checkpoint was written{remedy}")


def _drop_frozen_teachers(model: HfsslPreTrainedModel, state: dict[str, Any], prefix: str, metadata: Any) -> None:
    """``state_dict`` hook: the frozen teachers' weights are loaded from where the config says, never saved."""
    prefixes = tuple(f"{prefix}{name}." for name in model.frozen_teachers)
    for key in [key for key in state if key.startswith(prefixes)]:
        del state[key]


def _allow_missing_frozen_teachers(model: HfsslPreTrainedModel, incompatible: Any) -> None:
    """``load_state_dict`` post-hook: a state dict without the frozen teachers' weights is complete."""
    # Keys are relative to the module load_state_dict was called on: a wrapper (DDP) adds "module.".
    prefixes = tuple(f".{name}." for name in model.frozen_teachers)
    incompatible.missing_keys[:] = [key for key in incompatible.missing_keys
                                    if not any(prefix in f".{key}" for prefix in prefixes)]
