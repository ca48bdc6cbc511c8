"""Rank side of tests/losses/test_siglip_loss.py's two-process tests (run under ``torchrun --nproc_per_node 2``):
SigLIPLoss on a pair of linear towers (even and uneven splits), and the tiny CLIP with ``loss: siglip`` and the
gradient cache inside real DistributedDataParallel."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from distributed_worker import averaged_gradients, local_rows, serve_rank
from hfssl.distributed import world_size


class SigmoidPairEncoder(nn.Module):
    """Two linear "towers", a learned log scale and a learned bias: the smallest model SigLIPLoss trains."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Linear(6, 4)
        self.text = nn.Linear(5, 4)
        self.log_scale = nn.Parameter(torch.tensor(1.5))
        self.bias = nn.Parameter(torch.tensor(-2.0))

    def forward(self, images: torch.Tensor, texts: torch.Tensor, gather: bool = True) -> torch.Tensor:
        from hfssl.losses import SigLIPLoss

        return SigLIPLoss(gather_distributed=gather)(self.image(images), self.text(texts), self.log_scale.exp(),
                                                     self.bias)


def build_tiny_siglip(chunk_size: int | None) -> nn.Module:
    """The tiny CLIP of tests/models/clip/tiny_clip.py with the SigLIP loss, float64, no dropout (each rank
    would draw its own masks, which one process cannot reproduce)."""
    from hfssl.models.clip import HfsslCLIPConfig, HfsslCLIPForPreTraining
    from tiny import TINY

    kwargs = dict(TINY["clip"][0])
    no_dropout = {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    kwargs["vision_config"] = {**kwargs["vision_config"], **no_dropout}
    kwargs["text_config"] = {**kwargs["text_config"], **no_dropout}
    return HfsslCLIPForPreTraining(HfsslCLIPConfig(**kwargs, loss="siglip", logit_bias_init_value=-2.0,
                                                   gradient_cache_chunk_size=chunk_size)).double()


def run_linear(inputs: dict[str, Any], split: list[int]) -> dict[str, Any]:
    model = SigmoidPairEncoder().double()
    model.load_state_dict(inputs["pair_state"])
    images, texts = local_rows(inputs["pair_images"], split), local_rows(inputs["pair_texts"], split)
    loss = model(images, texts)
    loss.backward()
    with torch.no_grad():
        local_only = model(images, texts, gather=False)
    return {"loss": loss.detach(), "local_only_loss": local_only, "grads": averaged_gradients(model)}


def run_ddp(inputs: dict[str, Any]) -> dict[str, Any]:
    """The tiny SigLIP model in DDP with the gradient cache (chunks of 3 rows of the local 4), even split."""
    model = build_tiny_siglip(chunk_size=3)
    model.load_state_dict(inputs["model_state"])
    model.train()
    ddp = nn.parallel.DistributedDataParallel(model)
    split = [len(inputs["pixels"]) // world_size()] * world_size()
    output = ddp(pixel_values=local_rows(inputs["pixels"], split), input_ids=local_rows(inputs["input_ids"], split),
                 attention_mask=local_rows(inputs["attention_mask"], split))
    output.loss.backward()
    return {"loss": output.loss.detach(),
            "grads": {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}}


def main(out_dir: str) -> None:
    serve_rank(out_dir, "siglip_", lambda inputs: {
        "even": run_linear(inputs, inputs["even_split"]),
        "uneven": run_linear(inputs, inputs["uneven_split"]),
        "ddp": run_ddp(inputs),
    })
