"""Two-process worker of test_simcse_distributed.py (run by tests/torchrun.py): one rank's rows of the global
batch through DDP, with the gradient cache, and its loss and averaged gradients."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from distributed_worker import local_rows, serve_rank  # noqa: E402


def build_model(chunk_size: int | None) -> torch.nn.Module:
    """The tiny SimCSE model in float64 with dropout off (the ranks' masks would differ from one process's)."""
    from hfssl.models.simcse import SimCSEConfig, SimCSEForPreTraining
    from tiny_simcse import TINY_SIMCSE

    encoder = {**TINY_SIMCSE["encoder_config"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    config = SimCSEConfig(**{**TINY_SIMCSE, "encoder_config": encoder, "gradient_cache_chunk_size": chunk_size})
    return SimCSEForPreTraining(config).double()


def run_ddp(inputs: dict[str, Any]) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel

    model = build_model(inputs["chunk_size"])
    model.load_state_dict(inputs["state"])
    ddp = DistributedDataParallel(model)
    batch = {name: local_rows(value, inputs["split"]) for name, value in inputs["batch"].items()}
    output = ddp(**batch)
    output.loss.backward()
    return {"loss": output.loss.detach(),
            "grads": {name: parameter.grad.detach().clone() for name, parameter in model.named_parameters()}}


def main(out_dir: str) -> None:
    serve_rank(out_dir, "simcse_", run_ddp, inputs_file="simcse_inputs.pt")
