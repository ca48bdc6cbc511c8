"""Speed options of a training run: bf16 autocast, ``channels_last`` and ``torch.compile``.

Recipe keys (``train.*``, checked in :class:`hfssl.recipe.TrainConfig`):

* ``mixed_precision: bf16`` (or ``fp16``; ``no`` for float32; ``null`` keeps the Accelerate config's choice;
  ``auto``, the default, is resolved by the hardware in :mod:`hfssl.training.precision`):
  Accelerate wraps the model's forward in ``torch.autocast``, so matrix products and convolutions
  run in bf16 (AVX512-BF16/AMX oneDNN kernels on the CPU, tensor cores on the GPU) while the
  parameters, gradients, optimiser state and BatchNorm statistics stay float32. The views are made
  outside the forward, in float32, with autocast switched off (:mod:`hfssl.views.generators`);
  the losses normalise, form logits and take the softmax in float32 (:mod:`hfssl.losses.precision`).
* ``channels_last: true``: the 4-d weights of the model are kept in NHWC layout, so convolutions
  take oneDNN's (CPU) or cuDNN's (GPU) NHWC kernels and the activations stay NHWC between layers
  instead of being reordered to the kernels' blocked format and back at every convolution. The
  state dict (checkpoints, ``save_pretrained``) is given in the default contiguous layout, and
  :func:`restore_memory_format` puts the trained model back into it, so a checkpoint or an exported
  model does not depend on the option.
* ``compile: true`` (``compile_mode``): the training forward (and through AOT autograd its
  backward) is compiled by ``torch.compile`` with inductor. Compilation happens in the first step
  and is logged with its time. When the compiler fails (no C++ compiler, an unsupported operator)
  the run warns once, naming the error and the fix, and continues in eager mode with the batch
  norm statistics and random state of the failed attempt restored, so the step is not counted twice.

Each option changes the rounding of every step; a resumed run must use the same settings
(:mod:`hfssl.training.run_directory` refuses a change), and then it is bit-exact on the CPU.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import torch
from torch import nn

from hfssl.recipe import RecipeError

logger = logging.getLogger(__name__)

__all__ = ["apply_channels_last", "restore_memory_format", "CompiledForward", "compile_error_types"]


def _has_convolutions(model: nn.Module) -> bool:
    return any(isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)) for module in model.modules())


def _contiguous_state_dict(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """State-dict post-hook: every tensor in the default contiguous layout (safetensors needs it, and
    a checkpoint or an exported model must not depend on ``train.channels_last``)."""
    for key, value in state_dict.items():
        if torch.is_tensor(value) and not value.is_contiguous():
            state_dict[key] = value.contiguous()


def apply_channels_last(model: nn.Module, method: str) -> nn.Module:
    """Keep ``model``'s 4-d parameters and buffers in ``torch.channels_last`` (in place; returns it).

    Raises :class:`RecipeError` for a model without 2-d convolutions (a text model): the option
    would change nothing there, which is more likely a mistake in the recipe than a wish."""
    if not _has_convolutions(model):
        raise RecipeError(
            f"train.channels_last=true: the {method} model ({type(model).__name__}) has no 2-d convolution, so the "
            "NHWC layout would change nothing; remove train.channels_last (it is for convolutional backbones)")
    model.to(memory_format=torch.channels_last)
    model.register_state_dict_post_hook(_contiguous_state_dict)
    return model


def restore_memory_format(model: nn.Module) -> nn.Module:
    """Put every parameter and buffer of ``model`` back into the default contiguous layout (in place)."""
    return model.to(memory_format=torch.contiguous_format)


def compile_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions by which dynamo/inductor say that they could not compile (not a bug of the model)."""
    types: list[type[BaseException]] = []
    try:
        from torch._dynamo import exc as dynamo_exc

        types += [dynamo_exc.BackendCompilerFailed, dynamo_exc.Unsupported, dynamo_exc.TorchRuntimeError]
    except ImportError:  # pragma: no cover - torch without dynamo
        pass
    try:
        from torch._inductor.exc import InductorError

        types.append(InductorError)
    except ImportError:  # pragma: no cover - older torch
        pass
    try:
        from torch._inductor.exc import CppCompileError

        types.append(CppCompileError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(types)


class CompiledForward:
    """Call ``model`` through ``torch.compile(model, mode=mode)``, falling back to eager once.

    ``buffers_of`` returns copies of the model's forward-mutated buffers (batch-norm statistics)
    and ``restore`` puts them back: a compilation can fail after part of the forward has run
    eagerly (a graph break), so before the eager retry the buffers and the random state are those
    from before the attempt. The first compiled call (compilation of forward, and of backward in
    the first ``backward``) is timed: ``compile_seconds`` holds the forward's share after it.
    ``backend`` is for tests (a backend that fails).
    """

    def __init__(self, model: nn.Module, mode: str, method: str,
                 buffers_of: Callable[[], Any], restore: Callable[[Any], None], backend: Any = "inductor") -> None:
        self.model = model
        self.method = method
        self.mode = mode
        self._buffers_of = buffers_of
        self._restore = restore
        options = {} if mode == "default" else {"mode": mode}
        self.compiled: Any = torch.compile(model, backend=backend, **options)
        self.first_call = True
        self.compile_seconds: float | None = None
        self.failed: str | None = None

    def __call__(self, **inputs: Any) -> Any:
        if self.compiled is None:
            return self.model(**inputs)
        if not self.first_call:
            return self.compiled(**inputs)
        kept = self._buffers_of()
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        start = time.perf_counter()
        try:
            outputs = self.compiled(**inputs)
        except compile_error_types() as error:
            cause = getattr(error, "inner_exception", None) or error  # BackendCompilerFailed wraps the real one
            first_line = (str(cause).strip().splitlines() or [""])[0][:300]
            self.failed = f"{type(error).__name__}: {type(cause).__name__}: {first_line}"
            logger.warning(
                "train.compile=true: torch.compile (inductor, mode %s) could not compile the %s model (%s); the run "
                "continues without compilation (eager, same results up to rounding). Fix: install a C++ compiler "
                "(g++ or clang, needed by inductor on the CPU) and a torch build with inductor, or set "
                "train.compile=false to silence this warning", self.mode, self.method, self.failed)
            self.compiled = None
            self._restore(kept)
            torch.set_rng_state(rng)
            if cuda_rng is not None:
                torch.cuda.set_rng_state_all(cuda_rng)
            self.first_call = False
            return self.model(**inputs)
        self.compile_seconds = time.perf_counter() - start
        self.first_call = False
        logger.info("train.compile: compiled the %s model's forward in %.1f s (the backward compiles in the first "
                    "backward)", self.method, self.compile_seconds)
        return outputs
