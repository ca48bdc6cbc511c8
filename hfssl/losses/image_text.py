"""Contrastive image-text losses (CLIP, LiT, SigLIP): plain ``nn.Module``s over embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hfssl.distributed import gather_sizes, gather_with_grad, is_distributed, rank, world_size
from hfssl.losses.precision import float32_loss


class _PairLoss(nn.Module):
    """What CLIPLoss and SigLIPLoss share: the ``gather_distributed`` setting and the check of the pairs."""

    def __init__(self, gather_distributed: bool = True) -> None:
        super().__init__()
        self.gather_distributed = gather_distributed

    def extra_repr(self) -> str:
        return f"gather_distributed={self.gather_distributed}"

    def check_pairs(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> None:
        if image_embeds.ndim != 2 or image_embeds.shape != text_embeds.shape or image_embeds.shape[0] == 0:
            raise ValueError(f"{type(self).__name__} expects non-empty image and text embeddings of one shape (batch, "
                             f"dim), row i of both being a pair; got {tuple(image_embeds.shape)} and "
                             f"{tuple(text_embeds.shape)}")


class CLIPLoss(_PairLoss):
    """Symmetric cross entropy over image-text similarities (Radford et al. 2021, fig. 3).

    For a global batch of N pairs with L2-normalised image and text embeddings ``u_i, v_i`` and the
    learned scale ``s = exp(t)``: ``logits_ij = s * <u_i, v_j>``; the loss is the mean of the
    image-to-text cross entropy (row i's target is column i) and the text-to-image one.

    Distributed runs (``gather_distributed=True``): the embeddings of every process are gathered with
    gradients and each process scores only its *local* rows against the *global* columns (open_clip's
    ``local_loss``: a ``(B, N)`` logit block per direction instead of ``(N, N)``). Each process returns
    ``W / N`` times the sum of its rows' cross entropies, so the mean over processes is the global-batch
    loss and DDP's averaged gradients are its gradients (see :mod:`hfssl.distributed`); with equal local
    batches that is the local mean.

    Args:
        gather_distributed: use every process's pairs as negatives.

    Shapes: ``image_embeds, text_embeds: (B, D)`` (row i of both is a pair; any scale, they are
    L2-normalised here), ``logit_scale``: scalar ``s`` (already exponentiated) -> scalar.
    """

    @float32_loss
    def forward(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
        self.check_pairs(image_embeds, text_embeds)
        batch_size, dim = image_embeds.shape
        images = F.normalize(image_embeds, dim=1)
        texts = F.normalize(text_embeds, dim=1)
        if self.gather_distributed and is_distributed():
            sizes = gather_sizes(batch_size, images.device)
            offset, total, processes = sum(sizes[: rank()]), sum(sizes), world_size()
            both = gather_with_grad(torch.cat([images, texts], dim=1), sizes)  # (N, 2D), process order
            all_images, all_texts = both[:, :dim], both[:, dim:]
        else:
            offset, total, processes = 0, batch_size, 1
            all_images, all_texts = images, texts
        targets = torch.arange(batch_size, device=images.device) + offset
        logits_per_image = logit_scale * images @ all_texts.T  # (B, N): local images against every text
        logits_per_text = logit_scale * texts @ all_images.T  # (B, N): local texts against every image
        summed = (F.cross_entropy(logits_per_image, targets, reduction="sum")
                  + F.cross_entropy(logits_per_text, targets, reduction="sum"))
        return summed * (processes / (2 * total))


class SigLIPLoss(_PairLoss):
    """Pairwise sigmoid loss over image-text similarities (Zhai, Mustafa, Kolesnikov, Beyer 2023, "Sigmoid
    Loss for Language Image Pre-Training", sec. 3.1 and algorithm 1).

    For a global batch of N pairs with L2-normalised embeddings ``u_i, v_j``, the learned scale
    ``s = exp(t')`` and bias ``b``: ``logits_ij = s * <u_i, v_j> + b`` and

        ``loss = -(1 / N) * sum_ij log sigmoid(z_ij * logits_ij)``, ``z_ij = +1`` if ``i == j`` else ``-1``:

    every pair is an independent binary classification (matching or not), so no softmax normalises over
    the batch; the paper initialises ``t' = log 10`` and ``b = -10`` so that the ``N - 1`` negatives of a
    row do not dominate the start of training.

    Distributed runs (``gather_distributed=True``): each process keeps its own images and receives the
    *texts* of every process, gathered with gradients (:func:`hfssl.distributed.gather_with_grad`; the
    paper's and open_clip's neighbour exchange passes the same text chunks around a ring, which saves
    memory for very large batches but gives the same sums). Each process scores its ``B`` images against
    the ``N`` texts (a ``(B, N)`` logit block; together the blocks tile the ``(N, N)`` matrix once) and
    returns ``W / N`` times its block's sum, so the mean over the ``W`` processes is the global-batch loss
    and DDP's averaged gradients are its gradients (see :mod:`hfssl.distributed`), also when the local
    batches differ in size.

    Args:
        gather_distributed: score against every process's texts (off: each process's own pairs only).

    Shapes: ``image_embeds, text_embeds: (B, D)`` (row i of both is a pair; any scale, they are
    L2-normalised here), ``logit_scale``: scalar ``s`` (already exponentiated), ``logit_bias``: scalar
    ``b`` -> scalar.
    """

    @float32_loss
    def forward(self, image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor,
                logit_bias: torch.Tensor) -> torch.Tensor:
        self.check_pairs(image_embeds, text_embeds)
        batch_size = image_embeds.shape[0]
        images = F.normalize(image_embeds, dim=1)
        texts = F.normalize(text_embeds, dim=1)
        if self.gather_distributed and is_distributed():
            sizes = gather_sizes(batch_size, images.device)
            offset, total, processes = sum(sizes[: rank()]), sum(sizes), world_size()
            all_texts = gather_with_grad(texts, sizes)  # (N, D), process order
        else:
            offset, total, processes = 0, batch_size, 1
            all_texts = texts
        logits = logit_scale * images @ all_texts.T + logit_bias  # (B, N): local images against every text
        signs = -torch.ones_like(logits)
        signs[torch.arange(batch_size, device=logits.device), torch.arange(batch_size, device=logits.device) + offset] = 1
        return -F.logsigmoid(signs * logits).sum() * (processes / total)


__all__ = ["CLIPLoss", "SigLIPLoss"]
