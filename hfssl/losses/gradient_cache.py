"""Gradient cache: in-batch-negative losses over batches larger than the encoder's activations fit in memory.

Gao, Zhang, Han, Callan 2021 ("Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup",
the GradCache method): a contrastive loss over ``N`` embeddings needs every embedding at once, but the
encoder's activations only one chunk at a time. So

1. the encoder embeds the batch chunk by chunk *without* keeping activations (``torch.no_grad``),
2. the loss is computed on all the embeddings at once (they are small: ``(N, D)``),
3. in the backward, each chunk is embedded again *with* activations and the cached gradient of its
   embeddings is propagated through it, one chunk at a time, summing the parameter gradients.

The result equals the full-batch gradients (``tests/losses/test_gradient_cache.py``): the recomputed chunk
replays the random state (dropout) and the autocast state of its first pass.

How it fits the engine. hfssl's engine makes one ``accelerator.backward(loss)`` per micro-step and a model
never calls ``.backward()`` (STYLE.md). :func:`cached_embeddings` is therefore an autograd node, as
``torch.utils.checkpoint`` is: its forward is step 1, and the engine's single backward runs steps 3 inside
the node's ``backward``, which returns the summed parameter gradients as the gradients of its parameter
inputs. Autograd accumulates them once per parameter, so DDP's gradient hooks fire once, as in a plain
backward (a ``torch.autograd.backward`` per chunk inside the node would accumulate, and signal DDP, once per
chunk). Memory: the embeddings, one chunk's activations and one extra copy of the gradients.

Generic: ``encode`` is any function of a dict of tensors holding rows (token ids, pixels); a sentence
encoder (SimCSE) and a dual encoder's two towers (CLIP: one call per tower) use it alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["cached_embeddings"]

Encode = Callable[[Mapping[str, torch.Tensor]], torch.Tensor]


def _chunks(inputs: Mapping[str, torch.Tensor], chunk_size: int) -> list[dict[str, torch.Tensor]]:
    rows = next(iter(inputs.values())).shape[0]
    return [{name: value[start:start + chunk_size] for name, value in inputs.items()}
            for start in range(0, rows, chunk_size)]


def _rng_devices(chunks: list[dict[str, torch.Tensor]]) -> list[torch.device]:
    device = next(iter(chunks[0].values())).device
    return [device] if device.type == "cuda" else []


def _rng_state(devices: list[torch.device]) -> tuple[torch.Tensor, list[torch.Tensor]]:
    return torch.get_rng_state(), [torch.cuda.get_rng_state(device) for device in devices]


class _CachedEmbeddings(torch.autograd.Function):
    """Forward: chunks embedded without activations; backward: each chunk again with them (module docstring)."""

    @staticmethod
    def forward(ctx: Any, encode: Encode, chunks: list[dict[str, torch.Tensor]], device_type: str,
                *parameters: nn.Parameter) -> torch.Tensor:  # type: ignore[override]
        ctx.encode, ctx.chunks, ctx.device_type = encode, chunks, device_type
        ctx.saved_parameters = parameters  # leaves: kept by reference, no copy
        ctx.devices = _rng_devices(chunks)
        ctx.autocast = (torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type))
        ctx.states, outputs = [], []
        for chunk in chunks:
            ctx.states.append(_rng_state(ctx.devices))  # replayed in the backward: the same dropout masks
            outputs.append(encode(chunk).detach())
        ctx.sizes = [output.shape[0] for output in outputs]
        return torch.cat(outputs, dim=0)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        parameters = ctx.saved_parameters
        totals: list[torch.Tensor | None] = [None] * len(parameters)
        enabled, dtype = ctx.autocast
        for chunk, (cpu_state, device_states), grad in zip(ctx.chunks, ctx.states, grad_output.split(ctx.sizes)):
            with torch.random.fork_rng(devices=ctx.devices, device_type=ctx.device_type):
                torch.set_rng_state(cpu_state)
                for device, state in zip(ctx.devices, device_states):
                    torch.cuda.set_rng_state(state, device)
                with torch.enable_grad(), torch.autocast(ctx.device_type, dtype=dtype, enabled=enabled):
                    output = ctx.encode(chunk)
            grads = torch.autograd.grad(output, parameters, grad.to(output.dtype), allow_unused=True)
            totals = [total if part is None else part if total is None else total + part
                      for total, part in zip(totals, grads)]
        return (None, None, None, *totals)


def cached_embeddings(encode: Encode, inputs: Mapping[str, torch.Tensor], chunk_size: int | None,
                      parameters: Iterable[nn.Parameter]) -> torch.Tensor:
    """``encode(inputs)`` with the gradient cache: ``(N, D)`` embeddings whose backward gives the full-batch
    parameter gradients while holding the activations of ``chunk_size`` rows at a time.

    Args:
        encode: rows -> ``(rows, D)`` embeddings (run once per chunk forward and once per chunk backward).
        inputs: tensors of ``N`` rows each (token ids and attention mask, pixels).
        chunk_size: rows per chunk; ``None`` or ``>= N`` runs ``encode(inputs)`` as a plain forward.
        parameters: the parameters ``encode`` uses that should get gradients (those with ``requires_grad``
            are kept); gradients reach nothing else, so ``inputs`` themselves get none.
    """
    if not inputs:
        raise ValueError("cached_embeddings needs at least one input tensor")
    rows = next(iter(inputs.values())).shape[0]
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"the gradient cache's chunk size must be >= 1 (or None for no cache), got {chunk_size!r}")
    trainable = [parameter for parameter in parameters if parameter.requires_grad]
    if chunk_size is None or chunk_size >= rows or not torch.is_grad_enabled() or not trainable:
        return encode(inputs)
    chunks = _chunks(inputs, chunk_size)
    device_type = next(iter(inputs.values())).device.type
    return _CachedEmbeddings.apply(encode, chunks, device_type, *trainable)

