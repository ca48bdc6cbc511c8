"""The base class of every hfssl model, and the contract the training engine relies on.

Every hfssl model is a thin training-time shell (heads, teacher, loss) around a *transferable part*
that is a plain transformers model, kept at ``self.backbone``. The engine only ever uses:

* ``forward(**inputs) -> ModelOutput`` whose first field is ``loss`` and whose other ``*_loss``
  fields are logged. ``inputs`` is what the method's view generator produced.
* ``get_backbone()`` -> the plain transformers model that ``hfssl export`` writes to ``encoder/``.
* ``get_embeddings(...)`` -> pooled ``(batch, hidden)`` features for kNN, probes and monitors.
* ``update_teacher(momentum)`` where ``teacher_pairs`` is not empty (EMA, Grill et al. 2020 eq. 1).

No ``.backward()`` inside a model, no augmentation inside a model, no parameter created lazily.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel


class HfsslPreTrainedModel(PreTrainedModel):
    """Shared behaviour: weight init of hfssl's own modules, EMA teachers, the export contract."""

    base_model_prefix = "hfssl"
    main_input_name = "pixel_values"
    supports_gradient_checkpointing = False
    #: (teacher attribute, student attribute) pairs updated by :meth:`update_teacher`.
    teacher_pairs: tuple[tuple[str, str], ...] = ()

    def _init_weights(self, module: nn.Module) -> None:
        # hfssl's heads use PyTorch's default initialisation (as in the reference implementations
        # of SimCLR/BYOL in PyTorch); backbones keep their own transformers initialisation, which
        # transformers dispatches to the backbone's own _init_weights.
        if isinstance(module, (nn.Linear, nn.BatchNorm1d, nn.LayerNorm, nn.Conv2d)) and hasattr(
            module, "reset_parameters"
        ):
            module.reset_parameters()

    def get_backbone(self) -> PreTrainedModel:
        """Return the transferable plain-transformers model (saved to ``encoder/`` on export)."""
        return self.backbone

    def get_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:  # pragma: no cover - per model
        raise NotImplementedError

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

    def freeze_teachers(self) -> None:
        """Teachers never receive gradients: call at the end of ``__init__``."""
        for teacher_name, _ in self.teacher_pairs:
            getattr(self, teacher_name).requires_grad_(False)

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

    def push_to_hub(self, repo_id: str, **kwargs) -> dict[str, str]:  # type: ignore[override]
        """Publish this model as an hfssl repo: the full SSL model, the plain-transformers encoder,
        and (when the model was loaded from a run directory) its recipe, evaluation, pictures and
        a regenerated card. Keywords are those of :func:`hfssl.hub.push.push_run` (``private``,
        ``revision``, ``commit_message``, ``encoder_repo_id``, ``token``)."""
        from hfssl.hub.push import push_model_to_hub

        return push_model_to_hub(self, repo_id, **kwargs)

    def teacher_parameter_names(self) -> set[str]:
        names = set()
        for teacher_name, _ in self.teacher_pairs:
            names.update(f"{teacher_name}.{name}" for name, _ in getattr(self, teacher_name).named_parameters())
        return names
