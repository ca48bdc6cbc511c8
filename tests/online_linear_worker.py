"""Worker for tests/evaluation/test_online_linear.py, run on two processes by tests/torchrun.py.

Each process (1) trains the tiny SimCLR recipe with the online linear probe through the real engine, and
(2) makes two steps of a bare :class:`hfssl.evaluation.online.LinearProbe` on its own rows of a fixed batch
(process 0 the first ``SPLIT`` rows, process 1 the rest), saving the probe's weights and logged values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hfssl.evaluation.online import LinearProbe, OnlineLinear
from hfssl.recipe import Recipe, recipe_from_dict
from hfssl.training.trainer import train

from tiny import TINY

SPLIT = 7  # process 0's rows of the fixed batch (of 12): uneven, with unlabelled rows on both sides


def probe_recipe(**train_settings: Any) -> Recipe:
    """Tiny SimCLR (grey ResNet) on 192 digits, 16 px, with the online linear probe scored every 2 steps."""
    backbone = {**TINY["simclr"][0]["backbone_config"], "num_channels": 1}
    return recipe_from_dict({
        "method": "simclr",
        "model": {**TINY["simclr"][0], "backbone_config": backbone},
        "data": {"source": "builtin:digits", "image_size": 16, "channels": 1, "max_train_samples": 192},
        "views": {"mean": [0.5], "std": [0.5], "crop_scale": [0.5, 1.0]},
        "optim": {"lr": 0.01, "warmup_steps": 0},
        "train": {"batch_size": 32, "max_steps": 4, "checkpoint_every": 2, "trackers": [], "progress_bar": False,
                  "knn_every": None, "log_every": 1, "online_linear": {"lr": 0.05, "eval_every": 2, "max_samples": 64},
                  **train_settings},
        "eval": {"protocols": []},
    })


def fixed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(12, 6)`` and labels ``(12,)`` of 4 classes, three of them -1 (unlabelled)."""
    generator = torch.Generator().manual_seed(3)
    features = torch.randn(12, 6, generator=generator) * 3
    labels = torch.tensor([0, 1, -1, 2, 3, 1, 0, -1, 2, 3, -1, 1])
    return features, labels


def bare_probe_steps(features: torch.Tensor, labels: torch.Tensor) -> tuple[LinearProbe, list[dict[str, float]]]:
    """Two steps of a fresh probe on the same rows (the second as two micro-batches)."""
    probe = LinearProbe(features.shape[1], 4, lr=0.1, weight_decay=0.01, device="cpu")
    logs = [probe.step([features], [labels])]
    half = features.shape[0] // 2
    logs.append(probe.step([features[:half], features[half:]], [labels[:half], labels[half:]]))
    return probe, logs


def train_and_step(out_dir: str) -> None:
    out = Path(out_dir)
    result = train(probe_recipe(), out / "run", callbacks=[OnlineLinear(probe_recipe())])
    rank = result.accelerator.process_index
    features, labels = fixed_batch()
    rows = slice(0, SPLIT) if rank == 0 else slice(SPLIT, None)
    probe, logs = bare_probe_steps(features[rows], labels[rows])
    torch.save({"rank": rank, "processes": result.accelerator.num_processes, "weight": probe.classifier.weight.detach(),
                "bias": probe.classifier.bias.detach(), "logs": logs}, out / f"online_rank{rank}.pt")
