"""An MLP probe: non-linear top layers trained on frozen features ("train only the top layers").

RotNet (Gidaris et al. 2018, sec. 3.1 and Table 2) reports, beside the linear probe, classifiers of a few
fully connected layers (fc6-8 on ImageNet; on CIFAR three fully connected layers with batch norm and
ReLU) trained on the frozen convolutional features: how much of the task is solved by features that a
non-linear head can read but a linear one cannot. :func:`mlp_probe` is that head, trained with torch on
precomputed ``(N, D)`` features (no pass through the encoder per epoch):

* the features are standardised with the training rows' mean and scale, as the linear probe does
  (:func:`hfssl.evaluation.linear_probe.standardisation`);
* ``depth`` hidden layers of ``hidden_dim`` units, each ``Linear -> BatchNorm1d -> ReLU -> Dropout``,
  then a linear classifier (``depth = 0`` is a linear classifier trained by SGD);
* AdamW with a cosine learning-rate decay over ``epochs``, mini-batches of ``batch_size`` shuffled by a
  seeded generator; initialisation, shuffling and dropout all drawn from ``seed`` (the caller's random
  state is left as it was);
* model selection as the linear probe's C: the same stratified validation split of the training rows
  (:func:`hfssl.evaluation.linear_probe.validation_split`); the weights of the epoch with the best
  validation top-1 are kept (the earliest among ties), and training stops after ``patience`` epochs
  without improvement (early stopping). The test split is scored once, with those weights.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import numpy as np
import torch
from torch import nn

from hfssl.evaluation.linear_probe import check_probe_inputs, probe_device, standardisation, validation_split
from hfssl.evaluation.metrics import top_k_accuracies

logger = logging.getLogger(__name__)


def build_mlp(width: int, num_classes: int, hidden_dim: int, depth: int, dropout: float) -> nn.Sequential:
    """``depth`` x (``Linear -> BatchNorm1d -> ReLU -> Dropout``) then ``Linear(hidden_dim or width, num_classes)``."""
    layers: list[nn.Module] = []
    size = width
    for _ in range(depth):
        layers += [nn.Linear(size, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        size = hidden_dim
    layers.append(nn.Linear(size, num_classes))
    return nn.Sequential(*layers)


@torch.no_grad()
def _scores(model: nn.Module, features: torch.Tensor, batch_size: int) -> torch.Tensor:
    model.eval()
    return torch.cat([model(features[start:start + batch_size]) for start in range(0, len(features), batch_size)])


def mlp_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    hidden_dim: int = 512,
    depth: int = 2,
    dropout: float = 0.2,
    epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    validation_fraction: float = 0.1,
    patience: int | None = 10,
    seed: int = 0,
    device: torch.device | str | None = None,
    return_predictions: bool = False,
) -> dict[str, Any]:
    """Train an MLP on frozen features, choose its epoch on a validation split, score the test split.

    Args:
        train_features / test_features: ``(N, D)`` / ``(M, D)`` frozen features.
        train_labels / test_labels: ``(N,)`` / ``(M,)`` class indices in ``[0, num_classes)``.
        hidden_dim / depth / dropout: the head (see the module docstring).
        epochs: the most passes over the training rows; ``patience``: stop after this many epochs
            without a better validation top-1 (``None``: run every epoch).
        lr / weight_decay / batch_size: AdamW with a cosine decay, mini-batches.
        validation_fraction: the share of the training rows (stratified) that chooses the epoch.
        seed: initialisation, shuffling, dropout and the validation split.
        device: default CUDA when available, else the CPU.
        return_predictions: add ``"predictions"`` (``(M,)`` predicted classes; not an eval_results.json key).

    Returns:
        ``{"best_epoch", "top1", "top5"}``.
    """
    train_x = np.asarray(train_features, dtype=np.float32)
    test_x = np.asarray(test_features, dtype=np.float32)
    train_y = np.asarray(train_labels, dtype=np.int64)
    test_y = np.asarray(test_labels, dtype=np.int64)
    check_probe_inputs(train_x, train_y, test_x, test_y, num_classes, "MLP probe")
    device = probe_device(device)
    fit_x, val_x, fit_y, val_y = validation_split(train_x, train_y, validation_fraction, seed)
    x = torch.as_tensor(fit_x, device=device)
    mean, scale = standardisation(x)
    x = (x - mean) / scale
    y = torch.as_tensor(fit_y, device=device)
    val = (torch.as_tensor(val_x, device=device) - mean) / scale
    val_labels = torch.as_tensor(val_y, device=device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # initialisation and dropout; the caller's random state comes back after
        model = build_mlp(x.shape[1], num_classes, hidden_dim, depth, dropout).to(device)
        best_state, best_epoch, best_accuracy = _train(model, x, y, val, val_labels, epochs, lr, weight_decay,
                                                        batch_size, patience, seed)
    model.load_state_dict(best_state)
    scores = _scores(model, (torch.as_tensor(test_x, device=device) - mean) / scale, 4096)
    accuracies = top_k_accuracies(scores, test_y)
    logger.info("MLP probe: best validation top-1 %.4f at epoch %d; test top-1 %.4f top-5 %.4f", best_accuracy,
                best_epoch, accuracies["top1"], accuracies["top5"])
    row: dict[str, Any] = {"best_epoch": best_epoch, **accuracies}
    if return_predictions:
        row["predictions"] = scores.argmax(dim=1).cpu().numpy()
    return row


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, val: torch.Tensor, val_labels: torch.Tensor,
           epochs: int, lr: float, weight_decay: float, batch_size: int, patience: int | None,
           seed: int) -> tuple[dict[str, torch.Tensor], int, float]:
    """The training loop: returns the state of the best validation epoch, that epoch (1-based) and its accuracy."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    generator = torch.Generator(device="cpu").manual_seed(seed)
    batch_size = min(batch_size, len(x))
    best_state, best_epoch, best_accuracy = copy.deepcopy(model.state_dict()), 0, -1.0
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=generator).to(x.device)
        # drop_last: a BatchNorm layer cannot train on a last batch of one row.
        for start in range(0, len(x) - batch_size + 1, batch_size):
            rows = order[start:start + batch_size]
            loss = nn.functional.cross_entropy(model(x[rows]), y[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        scheduler.step()
        accuracy = float((_scores(model, val, 4096).argmax(dim=1) == val_labels).float().mean())
        if accuracy > best_accuracy:
            best_state, best_epoch, best_accuracy = copy.deepcopy(model.state_dict()), epoch, accuracy
        elif patience is not None and epoch - best_epoch >= patience:
            logger.info("MLP probe: no better validation top-1 for %d epochs; stopping at epoch %d", patience, epoch)
            break
    return best_state, best_epoch, best_accuracy
