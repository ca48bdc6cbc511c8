"""Worker for tests/models/test_multicrop_distributed.py, run under ``torchrun --nproc_per_node 2``.

``DIR/inputs.pt`` (written by the test) holds global batches, the initial weights of a tiny DINO and a
tiny SwAV model and how the rows are split between ranks. Each rank runs its rows through the real
models on a gloo process group, in float64, and writes the centre, codes, loss and DDP-averaged
gradients to ``DIR/multicrop_rank<r>.pt``; the test compares them with one process on the whole batch.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from distributed_worker import local_rows, serve_rank  # noqa: E402
from hfssl.distributed import convert_sync_batchnorm, rank, world_size  # noqa: E402
from hfssl.losses import sinkhorn_knopp  # noqa: E402
from tiny import TINY_VIT  # noqa: E402

# BatchNorm-free DINO (ViT backbone, head without BatchNorm): every row is computed on its own, so two
# ranks equal one process without SyncBatchNorm; SwAV's projector has BatchNorm, converted to
# hfssl's SyncBatchNorm as train.sync_batchnorm does.
DINO_CONFIG = {"backbone_config": TINY_VIT, "head_hidden_dim": 16, "head_bottleneck_dim": 8, "head_output_dim": 12}
SWAV_CONFIG = {"backbone_config": TINY_VIT, "projection_hidden_dim": 16, "projection_dim": 8, "num_prototypes": 6}


def build_dino() -> nn.Module:
    from hfssl.models.dino import DINOConfig, DINOForPreTraining

    return DINOForPreTraining(DINOConfig(**DINO_CONFIG)).double()


def build_swav(queue_size: int = 0) -> nn.Module:
    from hfssl.models.swav import SwAVConfig, SwAVForPreTraining

    return SwAVForPreTraining(SwAVConfig(**SWAV_CONFIG, queue_size=queue_size)).double()


def run_dino(inputs: dict[str, Any]) -> dict[str, Any]:
    """One DINO training step's forward, backward and hook on this rank's rows (DDP-averaged gradients)."""
    model = build_dino()
    model.load_state_dict(inputs["dino_state"])
    model.center.copy_(inputs["dino_center"])
    model.train()
    split = inputs["even_split"]
    pixel_values = local_rows(inputs["multicrop_pixels"], split)
    local_pixel_values = local_rows(inputs["multicrop_local_pixels"], split)
    model.on_train_step_start(1, {"teacher_temperature": 0.05})
    output = model(pixel_values=pixel_values, local_pixel_values=local_pixel_values)
    output.loss.backward()
    grads = averaged_gradients_of_trainable(model)
    model.on_train_step_end(1, {"teacher_momentum": 0.99})
    loss = output.loss.detach().clone()
    dist.all_reduce(loss)
    return {"loss": loss / world_size(), "center": model.center.clone(), "grads": grads}


def averaged_gradients_of_trainable(model: nn.Module) -> dict[str, torch.Tensor]:
    """all_reduce(SUM) / world_size of the gradient of every parameter that has one (as DDP does);
    teachers and unused backbone parts have none."""
    result = {}
    for name, parameter in model.named_parameters():
        if parameter.grad is None:
            continue
        grad = parameter.grad.detach().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        result[name] = grad / world_size()
    return result


def run_swav(inputs: dict[str, Any], with_queue: bool) -> dict[str, Any]:
    """One SwAV forward and backward on this rank's rows with SyncBatchNorm; with_queue: each rank
    holds its half of a full queue (the one-process run holds both halves)."""
    queue = inputs["swav_queue"]  # (A, 2Q, D), rank r holds rows [rQ, (r+1)Q)
    half = queue.shape[1] // 2
    model = build_swav(queue_size=half if with_queue else 0)
    model.load_state_dict(inputs["swav_state"])
    if with_queue:
        model.queue.copy_(queue[:, rank() * half : (rank() + 1) * half])
        model.queue_count.fill_(half)
    model = convert_sync_batchnorm(model)
    model.train()
    split = inputs["even_split"]
    output = model(pixel_values=local_rows(inputs["multicrop_pixels"], split),
                   local_pixel_values=local_rows(inputs["multicrop_local_pixels"], split))
    output.loss.backward()
    loss = output.loss.detach().clone()
    dist.all_reduce(loss)
    return {"loss": loss / world_size(), "codes": output.codes.detach(), "grads": averaged_gradients_of_trainable(model)}


def run_sinkhorn(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"codes": sinkhorn_knopp(local_rows(inputs["sinkhorn_scores"], inputs["uneven_split"]), 0.05, 3)}


def main(out_dir: str) -> None:
    serve_rank(out_dir, "multicrop_", lambda inputs: {
        "sinkhorn": run_sinkhorn(inputs),
        "dino": run_dino(inputs),
        "swav": run_swav(inputs, with_queue=False),
        "swav_queue": run_swav(inputs, with_queue=True),
    })
