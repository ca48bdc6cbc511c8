"""One rank of the causal LM's two-process test (run by tests/torchrun.py from test_clm_distributed.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import distributed_worker as worker  # noqa: E402


def build_clm() -> Any:
    """The tiny causal LM in float64, dropout off."""
    from hfssl.models.clm import CLMConfig, CLMForPreTraining
    from tiny_clm import TINY_GPT2

    config = CLMConfig(decoder_config={**TINY_GPT2, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
                       vocab_size=100, max_seq_length=16)
    return CLMForPreTraining(config).double()


def run_clm_ddp(inputs: dict[str, Any]) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel

    model = build_clm()
    model.load_state_dict(inputs["state"])
    ddp = DistributedDataParallel(model)
    batch = {name: worker.local_rows(value, inputs["split"]) for name, value in inputs["batch"].items()}
    output = ddp(**batch)
    output.loss.backward()
    grads = {name: parameter.grad.detach().clone() for name, parameter in model.named_parameters()}
    return {"loss": output.loss.detach(), "grads": grads}


def main(out_dir: str) -> None:
    worker.serve_rank(out_dir, "clm_", run_clm_ddp, inputs_file="clm_inputs.pt")
