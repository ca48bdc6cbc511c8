"""The one precision rule of every loss in :mod:`hfssl.losses`: computed in float32 under any autocast.

Under ``train.mixed_precision: bf16`` (or ``fp16``) the model's forward runs in ``torch.autocast``, and
so would a loss called from it: its normalisations, logits, softmaxes and batch statistics would be
rounded to 8 bits of mantissa. The losses live on small differences (logits over thousands of
candidates at temperatures of 0.04-0.2, sharpened teacher distributions, per-dimension variances), so
bf16 there changes the gradients by 1e-3 to 1e-2 relative (issue 28), for no speed: the losses are a
tiny share of a step's work.

The rule: a loss's ``forward`` (and each public function that computes a loss term) is wrapped in
:func:`float32_loss`, which switches autocast off for the device of its tensor arguments and casts
its half-precision floating-point tensor arguments (autocast's outputs) to float32; float32 and
float64 arguments are left as they are (the tests compare against float64). Gradients flow back
through the cast into the bf16 activations of the model as usual. A loss that builds tensors of its own
(masks, labels) makes them inside, in float32 or integer types, and a non-tensor argument (a
temperature) is untouched.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import torch

__all__ = ["float32_loss", "at_least_float32"]

F = TypeVar("F", bound=Callable[..., Any])


def at_least_float32(value: Any) -> Any:
    """A half-precision floating-point tensor (bf16, fp16) as float32; anything else unchanged."""
    if torch.is_tensor(value) and value.is_floating_point() and torch.finfo(value.dtype).bits < 32:
        return value.float()
    return value


def float32_loss(function: F) -> F:
    """Run ``function`` with autocast off on its tensors' device and its half-precision tensor
    arguments as float32 (see the module docstring)."""

    @functools.wraps(function)
    def in_float32(*args: Any, **kwargs: Any) -> Any:
        device_type = next((value.device.type for value in (*args, *kwargs.values()) if torch.is_tensor(value)), "cpu")
        with torch.autocast(device_type=device_type, enabled=False):
            return function(*(at_least_float32(value) for value in args),
                            **{name: at_least_float32(value) for name, value in kwargs.items()})

    return in_float32  # type: ignore[return-value]
