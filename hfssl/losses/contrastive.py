"""Contrastive losses."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from hfssl.distributed import gather_no_grad, gather_sizes, gather_with_grad, is_distributed, rank
from hfssl.losses.precision import float32_loss


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross entropy (SimCLR, Chen et al. 2020, eq. 1).

    For a global batch of N images with two views, each of the 2N embeddings is an anchor with one
    positive (the other view of the same image) and 2N - 2 negatives (both views of every other
    image): ``l(i, j) = -log exp(sim(z_i, z_j) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau)`` with
    cosine similarity ``sim``; the loss is the mean of ``l`` over the 2N anchors.

    Distributed runs (``gather_distributed=True``): each rank's anchors are scored against the
    candidates gathered from every rank with gradients, so the negatives come from the global batch.
    Each rank returns ``W / (2N)`` times the sum over its own anchors (W ranks), so the mean over
    ranks of the returned values (what Accelerate logs) is the global-batch loss and DDP's
    averaged gradients are its gradients, also when the last batch is split unevenly; with equal
    local batches the returned value is the local mean. See :mod:`hfssl.distributed`.

    Args:
        temperature: tau in eq. 1, finite and > 0 (paper: 0.1 for ImageNet with large batches,
            sec. 5.1; 0.5 in its CIFAR-10 runs, appendix B.9).
        gather_distributed: use every process's embeddings as negatives.

    Shapes: ``z1, z2: (B, D)``, row i of both being the two views of image i (any scale; they are
    L2-normalised here) -> scalar.
    """

    def __init__(self, temperature: float = 0.5, gather_distributed: bool = True) -> None:
        super().__init__()
        try:
            value = float(temperature)
        except (TypeError, ValueError):
            value = float("nan")
        if isinstance(temperature, bool) or not (math.isfinite(value) and value > 0):
            raise ValueError(f"NTXentLoss temperature must be a finite number > 0, got {temperature!r}")
        self.temperature = value
        self.gather_distributed = gather_distributed

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"

    @float32_loss  # normalisation, logits and softmax in float32 (bf16 logits over 2N candidates at
    # temperature 0.1-0.5 would lose the small differences the loss lives on): hfssl.losses.precision
    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if z1.ndim != 2 or z1.shape != z2.shape or z1.shape[0] == 0:
            raise ValueError(
                "NTXentLoss expects two non-empty (batch, dim) tensors of one shape (the two views of each "
                f"image, row by row), got {tuple(z1.shape)} and {tuple(z2.shape)}"
            )
        return self._loss(z1, z2)

    def _loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        batch_size, dim = z1.shape
        z1 = F.normalize(z1, dim=1)
        z2 = F.normalize(z2, dim=1)
        pairs = torch.cat([z1, z2], dim=1)  # (B, 2D): one gather for both views
        if self.gather_distributed and is_distributed():
            sizes = gather_sizes(batch_size, z1.device)
            offset = sum(sizes[: rank()])
            pairs = gather_with_grad(pairs, sizes)  # (N, 2D), rank order
        else:
            sizes, offset = [batch_size], 0
        total = pairs.shape[0]
        candidates = torch.cat([pairs[:, :dim], pairs[:, dim:]], dim=0)  # (2N, D): all first views, then all second
        anchors = torch.cat([z1, z2], dim=0)  # (2B, D): this rank's anchors
        logits = anchors @ candidates.T / self.temperature  # (2B, 2N)
        local = torch.arange(batch_size, device=z1.device) + offset
        self_index = torch.cat([local, local + total])  # each anchor's own column: k != i in eq. 1
        positive_index = torch.cat([local + total, local])  # the other view of the same image
        self_mask = F.one_hot(self_index, num_classes=2 * total).bool()
        logits = logits.masked_fill(self_mask, float("-inf"))
        loss_sum = F.cross_entropy(logits, positive_index, reduction="sum")
        return loss_sum * (len(sizes) / (2 * total))


def _check_temperature(owner: str, temperature: float) -> float:
    try:
        value = float(temperature)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(temperature, bool) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{owner} temperature must be a finite number > 0, got {temperature!r}")
    return value


def _global_offset(batch_size: int, device: torch.device) -> tuple[list[int], int]:
    """Every rank's local batch size and this rank's first row in the global batch."""
    if not is_distributed():
        return [batch_size], 0
    sizes = gather_sizes(batch_size, device)
    return sizes, sum(sizes[: rank()])


class InfoNCELoss(nn.Module):
    """InfoNCE against a queue of negatives (MoCo, He et al. 2020, eq. 1; MoCo v2, Chen et al. 2020).

    For each query ``q_i`` with its positive key ``k_i`` and the K keys of the queue as negatives:
    ``l_i = -log exp(q_i . k_i / tau) / (exp(q_i . k_i / tau) + sum_j exp(q_i . queue_j / tau))``
    on L2-normalised vectors; the loss is the mean of ``l_i`` over the global batch.

    Distributed runs: the queue is the same on every rank (it is filled with keys gathered from
    every rank) and each query only meets its own key, so no tensor crosses ranks in the loss.
    Each rank returns ``W / N`` times the sum over its ``B_r`` queries (W ranks, ``N = sum_r B_r``),
    so the rank-mean (what Accelerate logs) is the global-batch mean and DDP's averaged gradients
    are its gradients, also for unequal local batches (one tiny collective exchanges the sizes);
    with equal local batches the returned value is the local mean. See :mod:`hfssl.distributed`.

    Args:
        temperature: tau of eq. 1, finite and > 0 (MoCo v1: 0.07; MoCo v2: 0.2, sec. 3 of Chen et al.).

    Shapes: ``query, key: (B, D)`` (any scale; normalised here), ``queue: (K, D)`` whose rows must
    already be unit-norm (the model stores normalised keys; normalising K rows every step would
    copy the queue) -> scalar. The queue is treated as a constant (no gradient flows into it).
    """

    def __init__(self, temperature: float = 0.2) -> None:
        super().__init__()
        self.temperature = _check_temperature("InfoNCELoss", temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    @float32_loss
    def forward(self, query: torch.Tensor, key: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        if query.ndim != 2 or query.shape != key.shape or query.shape[0] == 0:
            raise ValueError(f"InfoNCELoss expects non-empty (batch, dim) query and key of one shape, got "
                             f"{tuple(query.shape)} and {tuple(key.shape)}")
        if queue.ndim != 2 or queue.shape[1] != query.shape[1]:
            raise ValueError(f"InfoNCELoss expects a (queue_size, {query.shape[1]}) queue, got {tuple(queue.shape)}")
        query = F.normalize(query, dim=1)
        key = F.normalize(key, dim=1)
        positive = (query * key).sum(dim=1, keepdim=True)  # (B, 1): "l_pos" of Algorithm 1
        negative = query @ queue.detach().to(query.dtype).T  # (B, K): "l_neg"
        logits = torch.cat([positive, negative], dim=1) / self.temperature  # (B, 1 + K)
        # The positive is column 0 of every row (Algorithm 1: labels = zeros(N)).
        labels = torch.zeros(query.shape[0], dtype=torch.long, device=query.device)
        sizes, _ = _global_offset(query.shape[0], query.device)
        loss_sum = F.cross_entropy(logits, labels, reduction="sum")
        return loss_sum * (len(sizes) / sum(sizes))


class MoCoV3Loss(nn.Module):
    """The symmetrised contrastive loss of MoCo v3 (Chen, Xie, He 2021, sec. 3 and Algorithm 1).

    ``ctr(q, k) = 2 tau * CE(q_i . k_j / tau, j = i)`` with the keys ``k`` of the *global* batch as
    candidates (the positive of query i is the key of the same image; every other image's key is a
    negative), averaged over the global batch; the loss is ``ctr(q1, k2) + ctr(q2, k1)``. The
    ``2 tau`` factor is the paper's (Algorithm 1): it makes the gradient scale insensitive to tau.

    Distributed runs (``gather_distributed=True``): the keys are gathered from every process with
    :func:`hfssl.distributed.gather_with_grad` (keys from a momentum encoder carry no gradient,
    but a key that does, e.g. with a shared encoder, gets the correct one), and each rank returns
    ``W / N`` times the sum over its own queries, so the rank-mean is the global-batch loss and
    DDP's averaged gradients are its gradients, also for unequal local batches. With equal local
    batches that is the local mean over the local queries against the global keys.

    Args:
        temperature: tau, finite and > 0 (paper: 0.2 for ViT, 1.0 for ResNet-50, sec. 4 / appendix).
        gather_distributed: use every process's keys as negatives.

    Shapes: ``q1, q2, k1, k2: (B, D)``, row i being the views of image i (any scale; normalised
    here) -> scalar.
    """

    def __init__(self, temperature: float = 0.2, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature = _check_temperature("MoCoV3Loss", temperature)
        self.gather_distributed = gather_distributed

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"

    @float32_loss
    def contrastive(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """``ctr(q, k)`` of Algorithm 1, scaled for DDP as described in the class docstring."""
        query = F.normalize(query, dim=1)
        key = F.normalize(key, dim=1)
        if self.gather_distributed and is_distributed():
            sizes, offset = _global_offset(query.shape[0], query.device)
            key = gather_with_grad(key, sizes)  # (N, D), rank order
        else:
            sizes, offset = [query.shape[0]], 0
        logits = query @ key.T / self.temperature  # (B, N)
        labels = torch.arange(query.shape[0], device=query.device) + offset  # this rank's images in the gather
        loss_sum = F.cross_entropy(logits, labels, reduction="sum")
        return loss_sum * (len(sizes) / sum(sizes)) * (2 * self.temperature)

    @float32_loss
    def forward(self, q1: torch.Tensor, q2: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor) -> torch.Tensor:
        shapes = {tuple(t.shape) for t in (q1, q2, k1, k2)}
        if len(shapes) != 1 or q1.ndim != 2 or q1.shape[0] == 0:
            raise ValueError("MoCoV3Loss expects four non-empty (batch, dim) tensors of one shape (queries and "
                             f"keys of both views), got {[tuple(t.shape) for t in (q1, q2, k1, k2)]}")
        return self.contrastive(q1, k2) + self.contrastive(q2, k1)


class SimCSELoss(nn.Module):
    """In-batch-negative contrastive loss of SimCSE (Gao, Yao, Chen 2021, eqs. 1 and 5).

    Anchor ``h_i`` with its positive ``h_i^+`` (unsupervised: the same sentence under another dropout mask,
    eq. 1; supervised: its paired sentence, eq. 5) and, optionally, a hard negative ``h_i^-``:
    ``l_i = -log exp(sim(h_i, h_i^+) / tau) / sum_j (exp(sim(h_i, h_j^+) / tau) + exp(sim(h_i, h_j^-) / tau))``
    with cosine similarity; the candidates ``h_j^+`` (and ``h_j^-``) are those of the *global* batch. This is
    the official ``cl_forward`` (anchors against positives, not symmetrised) and sentence-transformers'
    ``MultipleNegativesRankingLoss`` (scale ``1 / tau``).

    Duplicates (exact de-duplication by text): with ``anchor_keys`` / ``candidate_keys`` (an integer per
    text, equal for equal texts), a candidate whose text equals the anchor's or the anchor's positive
    text is left out of that anchor's denominator (except the positive itself), so a sentence that
    appears twice in a batch is never the negative of its own copy.

    Distributed runs (``gather_distributed=True``): the candidates are gathered with gradients; each
    process returns ``W / N`` times the sum over its anchors, so the process mean is the global-batch loss
    and DDP's averaged gradients are its gradients (see :mod:`hfssl.distributed`).

    Shapes: ``anchors, positives: (B, D)``, ``negatives: (B, D)`` or ``None`` (any scale; normalised here);
    ``anchor_keys: (B, 2)`` (the anchor's and its positive's text keys), ``candidate_keys: (B,)`` or
    ``(B, 2)`` (positive, negative) -> ``(loss, accuracy)``: the scalar loss and, without gradient, the share
    of local anchors whose best candidate is their positive.
    """

    def __init__(self, temperature: float = 0.05, gather_distributed: bool = True) -> None:
        super().__init__()
        self.temperature = _check_temperature("SimCSELoss", temperature)
        self.gather_distributed = gather_distributed

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, gather_distributed={self.gather_distributed}"

    @float32_loss
    def forward(self, anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor | None = None,
                anchor_keys: torch.Tensor | None = None, candidate_keys: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if anchors.ndim != 2 or anchors.shape != positives.shape or anchors.shape[0] == 0:
            raise ValueError("SimCSELoss expects non-empty anchors and positives of one shape (batch, dim), row i of both "
                             f"being a pair; got {tuple(anchors.shape)} and {tuple(positives.shape)}")
        if negatives is not None and negatives.shape != anchors.shape:
            raise ValueError(f"SimCSELoss expects hard negatives of the anchors' shape {tuple(anchors.shape)}, "
                             f"got {tuple(negatives.shape)}")
        if (anchor_keys is None) != (candidate_keys is None):
            raise ValueError("SimCSELoss: give both anchor_keys and candidate_keys (or neither)")
        batch_size = anchors.shape[0]
        anchors = F.normalize(anchors, dim=1)
        candidates = F.normalize(positives, dim=1)
        if negatives is not None:
            candidates = torch.cat([candidates, F.normalize(negatives, dim=1)], dim=1)  # (B, 2D): one gather for both
        keys = None if candidate_keys is None else candidate_keys.reshape(batch_size, -1)
        sizes, offset = (_global_offset(batch_size, anchors.device) if self.gather_distributed
                         else ([batch_size], 0))
        if len(sizes) > 1:
            candidates = gather_with_grad(candidates, sizes)  # (N, D) or (N, 2D), process order
            keys = None if keys is None else gather_no_grad(keys, sizes)
        dim, total = anchors.shape[1], candidates.shape[0]
        # (N, D) / (N, 2D) -> (N, D) / (2N, D): every positive, then every hard negative.
        candidates = torch.cat(candidates.split(dim, dim=1), dim=0)
        logits = anchors @ candidates.T / self.temperature  # (B, N) or (B, 2N)
        targets = torch.arange(batch_size, device=anchors.device) + offset
        if keys is not None:
            keys = torch.cat(keys.unbind(1), dim=0)  # (N,) or (2N,), in the candidates' order
            anchor_keys = anchor_keys.reshape(batch_size, -1)
            same_text = (keys[None, :, None] == anchor_keys[:, None, :]).any(dim=2)  # (B, C)
            same_text[torch.arange(batch_size, device=anchors.device), targets] = False
            logits = logits.masked_fill(same_text, float("-inf"))
        loss_sum = F.cross_entropy(logits, targets, reduction="sum")
        with torch.no_grad():
            accuracy = (logits.argmax(dim=1) == targets).float().mean()
        return loss_sum * (len(sizes) / sum(sizes)), accuracy
