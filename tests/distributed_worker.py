"""Worker for tests/test_distributed.py: run under ``torchrun --standalone --nproc_per_node 2``.

``python -m torch.distributed.run --standalone --nproc_per_node 2 tests/distributed_worker.py DIR``

``DIR/inputs.pt`` (written by the test) holds the global batches, the initial model weights and
how the batches are split between ranks. Each rank runs every distributed computation on its own
rows on a gloo process group and writes its results to ``DIR/rank<r>.pt``; the test compares them
with one process on the whole batch. Everything runs in float64 so that only real differences (a
wrong gradient convention, local instead of global statistics) exceed the tolerance.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hfssl.distributed import (  # noqa: E402
    all_reduce_mean,
    convert_sync_batchnorm,
    gather_no_grad,
    gather_sizes,
    gather_with_grad,
    is_distributed,
    rank,
    world_size,
)
from hfssl.losses import NTXentLoss  # noqa: E402
from hfssl.losses import BarlowTwinsLoss, VICRegLoss  # noqa: E402

TEMPERATURE = 0.2


def build_simclr() -> nn.Module:
    """The tiny SimCLR model (2-stage ResNet with BatchNorm, BN projection MLP), float64."""
    from hfssl.models.simclr import SimCLRConfig, SimCLRForPreTraining
    from tiny import TINY_RESNET

    config = SimCLRConfig(backbone_config=TINY_RESNET, projection_hidden_dim=16, projection_dim=8,
                          temperature=TEMPERATURE)
    return SimCLRForPreTraining(config).double()


def build_linear() -> nn.Module:
    return nn.Linear(6, 4).double()


def local_rows(tensor: torch.Tensor, split: list[int]) -> torch.Tensor:
    """This rank's rows of a global batch split into consecutive chunks of sizes ``split``."""
    start = sum(split[: rank()])
    return tensor[start : start + split[rank()]]


def averaged_gradients(model: nn.Module) -> dict[str, torch.Tensor]:
    """all_reduce(SUM) / world_size of every parameter gradient: what DDP and Accelerate do."""
    result = {}
    for name, parameter in model.named_parameters():
        grad = parameter.grad.detach().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        result[name] = grad / world_size()
    return result


def run_gathers(inputs: dict[str, Any]) -> dict[str, Any]:
    """gather_sizes / gather_no_grad / gather_with_grad on unequal local batches, all_reduce_mean."""
    features = local_rows(inputs["gather_features"], inputs["uneven_split"])
    weights = inputs["gather_weights"][rank()]  # (total, 3): each rank weighs the gathered rows its own way
    leaf = features.clone().requires_grad_(True)
    gathered = gather_with_grad(leaf)
    (gathered * weights).sum().backward()
    float_value = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64) * (rank() + 1)
    float_before = float_value.clone()
    mean = all_reduce_mean(float_value)
    return {
        "sizes": gather_sizes(features.shape[0]),
        "no_grad": gather_no_grad(features),
        "with_grad": gathered.detach(),
        "with_grad_input_grad": leaf.grad,
        "mean": mean,
        "mean_input_unchanged": bool(torch.equal(float_value, float_before)),
        "int_mean": all_reduce_mean(torch.tensor([rank() + 1, 10 * (rank() + 1)])),
    }


def run_ntxent_linear(inputs: dict[str, Any], split: list[int]) -> dict[str, Any]:
    """NT-Xent with gathered negatives on a Linear encoder; gradients averaged as DDP does."""
    model = build_linear()
    model.load_state_dict(inputs["linear_state"])
    x1 = local_rows(inputs["linear_x1"], split)
    x2 = local_rows(inputs["linear_x2"], split)
    loss = NTXentLoss(TEMPERATURE, gather_distributed=True)(model(x1), model(x2))
    loss.backward()
    with torch.no_grad():
        local_only = NTXentLoss(TEMPERATURE, gather_distributed=False)(model(x1), model(x2))
    return {"loss": loss.detach(), "local_only_loss": local_only, "grads": averaged_gradients(model)}


def run_simclr_ddp(inputs: dict[str, Any]) -> dict[str, Any]:
    """Tiny SimCLR with hfssl SyncBatchNorm inside real DistributedDataParallel (gloo, CPU)."""
    model = build_simclr()
    model.load_state_dict(inputs["simclr_state"])
    model = convert_sync_batchnorm(model)
    model.train()
    ddp = nn.parallel.DistributedDataParallel(model)
    pixel_values = local_rows(inputs["simclr_pixels"], inputs["even_split"])
    output = ddp(pixel_values=pixel_values)
    output.loss.backward()  # DDP all-reduces and averages the gradients here
    buffers = {name: value.detach().clone() for name, value in model.named_buffers()}

    # Control: the same step with per-rank BatchNorm must give a different loss.
    plain = build_simclr()
    plain.load_state_dict(inputs["simclr_state"])
    plain.train()
    with torch.no_grad():
        plain_loss = plain(pixel_values=pixel_values).loss
    return {
        "loss": output.loss.detach(),
        "projections": output.projections.detach(),
        "grads": {name: parameter.grad.detach().clone() for name, parameter in model.named_parameters()},
        "buffers": buffers,
        "local_batch_norm_loss": plain_loss,
        "batch_norm_types": sorted({type(m).__module__ + "." + type(m).__name__ for m in model.modules()
                                    if isinstance(m, nn.modules.batchnorm._BatchNorm)}),
    }


def run_sync_batch_norm(inputs: dict[str, Any]) -> dict[str, Any]:
    """Standalone BatchNorm2d (momentum 0.1) and BatchNorm1d (momentum None, cumulative) layers
    converted to SyncBatchNorm, on unequal local batches, for two training steps then eval."""
    results: dict[str, Any] = {}
    for name in ("bn2d", "bn1d"):
        layer = convert_sync_batchnorm(inputs[f"{name}_layer"]).train()
        step_results = []
        for step in range(2):
            x = local_rows(inputs[f"{name}_x{step}"], inputs["uneven_split"]).clone().requires_grad_(True)
            weights = local_rows(inputs[f"{name}_w{step}"], inputs["uneven_split"])
            layer.zero_grad()
            output = layer(x)
            (output * weights).sum().backward()
            summed = {}
            for parameter_name, parameter in layer.named_parameters():
                grad = parameter.grad.detach().clone()
                dist.all_reduce(grad, op=dist.ReduceOp.SUM)
                summed[parameter_name] = grad
            step_results.append({
                "output": output.detach(),
                "input_grad": x.grad.detach(),
                "param_grads": summed,
                "running_mean": layer.running_mean.clone(),
                "running_var": layer.running_var.clone(),
                "num_batches_tracked": int(layer.num_batches_tracked),
            })
        layer.eval()
        with torch.no_grad():
            eval_output = layer(local_rows(inputs[f"{name}_x0"], inputs["uneven_split"]))
        results[name] = {"steps": step_results, "eval_output": eval_output, "type": type(layer).__name__}
    return results


BARLOW_TWINS_OFF_DIAGONAL_WEIGHT = 0.5  # larger than the paper's 5e-3 so both terms shape the gradients


def build_redundancy_reduction_loss(name: str, gather_distributed: bool) -> nn.Module:
    """VICReg (paper coefficients) or Barlow Twins, the losses with global-batch statistics."""
    if name == "vicreg":
        return VICRegLoss(gather_distributed=gather_distributed)
    return BarlowTwinsLoss(BARLOW_TWINS_OFF_DIAGONAL_WEIGHT, gather_distributed=gather_distributed)


def run_redundancy_reduction_linear(inputs: dict[str, Any], split: list[int], name: str) -> dict[str, Any]:
    """VICReg or Barlow Twins over the gathered global batch on a Linear encoder; every returned term
    and the gradients averaged as DDP does."""
    model = build_linear()
    model.load_state_dict(inputs["linear_state"])
    x1 = local_rows(inputs["linear_x1"], split)
    x2 = local_rows(inputs["linear_x2"], split)
    output = build_redundancy_reduction_loss(name, gather_distributed=True)(model(x1), model(x2))
    output.loss.backward()
    with torch.no_grad():
        local_only = build_redundancy_reduction_loss(name, gather_distributed=False)(model(x1), model(x2)).loss
    return {"terms": {key: value.detach() for key, value in output._asdict().items()},
            "local_only_loss": local_only, "grads": averaged_gradients(model)}


def serve_rank(out_dir: str | Path, prefix: str, results_of: Callable[[dict[str, Any]], dict[str, Any]],
               inputs_file: str = "inputs.pt") -> None:
    """One rank of a two-process test: join the gloo group, compute ``results_of(inputs)`` from the
    saved inputs, save them (with ``"rank"``) as ``{prefix}rank{r}.pt``, and leave the group together
    (a rank that exits while the other still talks to it aborts)."""
    out_dir = Path(out_dir)
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    if not is_distributed() or world_size() != 2:
        raise RuntimeError(f"expected 2 processes, got {world_size()}")
    inputs = torch.load(out_dir / inputs_file, weights_only=False)
    results = {"rank": rank(), **results_of(inputs)}
    torch.save(results, out_dir / f"{prefix}rank{rank()}.pt")
    dist.barrier()
    dist.destroy_process_group()


def main(out_dir: str | None = None) -> None:
    serve_rank(out_dir if out_dir is not None else sys.argv[1], "", lambda inputs: {
        "gathers": run_gathers(inputs),
        "ntxent_even": run_ntxent_linear(inputs, inputs["even_split"]),
        "ntxent_uneven": run_ntxent_linear(inputs, inputs["uneven_split"]),
        "simclr": run_simclr_ddp(inputs),
        "sync_batch_norm": run_sync_batch_norm(inputs),
        "vicreg_even": run_redundancy_reduction_linear(inputs, inputs["even_split"], "vicreg"),
        "vicreg_uneven": run_redundancy_reduction_linear(inputs, inputs["uneven_split"], "vicreg"),
        "barlow_twins_even": run_redundancy_reduction_linear(inputs, inputs["even_split"], "barlow_twins"),
        "barlow_twins_uneven": run_redundancy_reduction_linear(inputs, inputs["uneven_split"], "barlow_twins"),
    })


if __name__ == "__main__":
    main()


# ---------------------------------------------------------------- MoCo v2 / v3
# Run by a second torchrun in tests/test_distributed.py (``main_moco``), so that the runs above stay as they are.


def build_moco(**overrides: Any) -> nn.Module:
    """Tiny MoCo v2 (ResNet with BatchNorm, a queue of 12 keys), float64."""
    from hfssl.models.moco import MoCoConfig, MoCoForPreTraining
    from tiny import TINY_RESNET

    config = MoCoConfig(backbone_config=TINY_RESNET, projection_hidden_dim=16, projection_dim=8, queue_size=12,
                        temperature=TEMPERATURE, **overrides)
    return MoCoForPreTraining(config).double()


def build_moco_v3() -> nn.Module:
    """Tiny MoCo v3 on the ResNet (BatchNorm in the backbone and in both heads), float64."""
    from hfssl.models.moco_v3 import MoCoV3Config, MoCoV3ForPreTraining
    from tiny import TINY_RESNET

    config = MoCoV3Config(backbone_config=TINY_RESNET, projection_hidden_dim=16, projection_dim=8,
                          prediction_hidden_dim=16, temperature=TEMPERATURE)
    return MoCoV3ForPreTraining(config).double()


def run_moco_losses_linear(inputs: dict[str, Any], split: list[int]) -> dict[str, Any]:
    """InfoNCE against a fixed queue and MoCo v3's loss (keys from the same Linear, so with gradients
    through the gather) on local rows; gradients averaged as DDP does."""
    from hfssl.losses import InfoNCELoss, MoCoV3Loss

    results: dict[str, Any] = {}
    x1, x2 = local_rows(inputs["linear_x1"], split), local_rows(inputs["linear_x2"], split)
    for name in ("infonce", "moco_v3"):
        model = build_linear()
        model.load_state_dict(inputs["linear_state"])
        if name == "infonce":
            loss = InfoNCELoss(TEMPERATURE)(model(x1), model(x2), inputs["moco_queue"])
            local_only = None
        else:
            criterion = MoCoV3Loss(TEMPERATURE, gather_distributed=True)
            loss = criterion(model(x1), model(x2), model(x1.flip(1)), model(x2.flip(1)))
            with torch.no_grad():
                local_only = MoCoV3Loss(TEMPERATURE, gather_distributed=False)(
                    model(x1), model(x2), model(x1.flip(1)), model(x2.flip(1)))
        loss.backward()
        results[name] = {"loss": loss.detach(), "local_only_loss": local_only, "grads": averaged_gradients(model)}
    return results


def run_moco_queue(inputs: dict[str, Any], shuffle: bool) -> dict[str, Any]:
    """Two training steps of tiny MoCo v2 (forward, then the engine's per-step hook) on local rows."""
    model = build_moco(shuffle_batch_norm=shuffle)
    model.load_state_dict(inputs["moco_state"])
    model.load_training_state_dict(inputs["moco_training_state"])
    model.train()
    steps = []
    for step, pixels in enumerate(inputs["moco_pixels"]):
        generator = torch.Generator().manual_seed(100 * (step + 1) + rank())  # rank 0's permutation must win
        output = model(pixel_values=local_rows(pixels, inputs["even_split"]), generator=generator)
        model.on_train_step_end(step + 1, {"teacher_momentum": 0.99})
        steps.append({"loss": output.loss.detach(), "keys": output.positive_keys,
                      "queue": model.queue.clone(), "pointer": int(model.queue_pointer)})
    return {"steps": steps}


def run_moco_v3_ddp(inputs: dict[str, Any]) -> dict[str, Any]:
    """Tiny MoCo v3 with hfssl SyncBatchNorm (what ``train.sync_batchnorm`` does) inside real DDP."""
    model = convert_sync_batchnorm(build_moco_v3())
    model.load_state_dict(inputs["moco_v3_state"])
    model.train()
    ddp = nn.parallel.DistributedDataParallel(model)
    output = ddp(pixel_values=local_rows(inputs["simclr_pixels"], inputs["even_split"]))
    output.loss.backward()
    return {"loss": output.loss.detach(),
            "grads": {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}}


def main_moco(out_dir: str) -> None:
    serve_rank(out_dir, "moco_", lambda inputs: {
        "losses_even": run_moco_losses_linear(inputs, inputs["even_split"]),
        "losses_uneven": run_moco_losses_linear(inputs, inputs["uneven_split"]),
        "queue": run_moco_queue(inputs, shuffle=False),
        "queue_shuffled": run_moco_queue(inputs, shuffle=True),
        "moco_v3_ddp": run_moco_v3_ddp(inputs),
    })


# ---------------------------------------------------------------- BERT masked language modelling
# Run by tests/models/mlm/test_mlm_distributed.py (``main_mlm``): each rank holds its rows of the global batch
# (ranks hold different numbers of masked tokens), DDP averages the gradients.


def build_mlm() -> nn.Module:
    """The tiny MLM model (2-layer BERT, vocabulary 100) in float64, dropout off."""
    from hfssl.models.mlm import MLMConfig, MLMForPreTraining
    from tiny import TINY_BERT

    config = MLMConfig(bert_config={**TINY_BERT, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
                       vocab_size=100, max_seq_length=16, next_sentence_prediction=True)
    return MLMForPreTraining(config).double()


def run_mlm_ddp(inputs: dict[str, Any]) -> dict[str, Any]:
    from torch.nn.parallel import DistributedDataParallel

    model = build_mlm()
    model.load_state_dict(inputs["state"])
    ddp = DistributedDataParallel(model)
    split = inputs["split"]
    batch = {name: local_rows(value, split) for name, value in inputs["batch"].items()}
    output = ddp(**batch)
    output.loss.backward()
    grads = {name: parameter.grad.detach().clone() for name, parameter in model.named_parameters()
             if parameter.grad is not None}
    return {"loss": output.loss.detach(), "mlm_loss": output.mlm_loss.detach(), "nsp_loss": output.nsp_loss.detach(),
            "grads": grads}


def main_mlm(out_dir: str) -> None:
    serve_rank(out_dir, "mlm_", run_mlm_ddp, inputs_file="mlm_inputs.pt")


# ---------------------------------------------------------------- CLIP: local rows against gathered columns
# Run by a third torchrun in tests/test_distributed.py (``main_clip``).


class PairEncoder(nn.Module):
    """Two linear "towers" and a learned log logit scale: the smallest model CLIPLoss trains."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Linear(6, 4)
        self.text = nn.Linear(5, 4)
        self.log_scale = nn.Parameter(torch.tensor(1.5))

    def forward(self, images: torch.Tensor, texts: torch.Tensor, gather: bool = True) -> torch.Tensor:
        from hfssl.losses import CLIPLoss

        return CLIPLoss(gather_distributed=gather)(self.image(images), self.text(texts), self.log_scale.exp())


def build_tiny_clip() -> nn.Module:
    """The tiny CLIP of tests/models/clip/tiny_clip.py without dropout, float64."""
    from hfssl.models.clip import HfsslCLIPConfig, HfsslCLIPForPreTraining
    from tiny import TINY

    kwargs = dict(TINY["clip"][0])
    kwargs["text_config"] = {**kwargs["text_config"], "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
    return HfsslCLIPForPreTraining(HfsslCLIPConfig(**kwargs)).double()


def run_clip_linear(inputs: dict[str, Any], split: list[int]) -> dict[str, Any]:
    model = PairEncoder().double()
    model.load_state_dict(inputs["pair_state"])
    images, texts = local_rows(inputs["pair_images"], split), local_rows(inputs["pair_texts"], split)
    loss = model(images, texts)
    loss.backward()
    with torch.no_grad():
        local_only = model(images, texts, gather=False)
    return {"loss": loss.detach(), "local_only_loss": local_only, "grads": averaged_gradients(model)}


def run_clip_ddp(inputs: dict[str, Any]) -> dict[str, Any]:
    """The tiny CLIP model inside real DistributedDataParallel (gloo, CPU), even split."""
    model = build_tiny_clip()
    model.load_state_dict(inputs["clip_state"])
    model.train()
    ddp = nn.parallel.DistributedDataParallel(model)
    split = inputs["even_split"]
    output = ddp(pixel_values=local_rows(inputs["clip_pixels"], split),
                 input_ids=local_rows(inputs["clip_input_ids"], split),
                 attention_mask=local_rows(inputs["clip_attention_mask"], split))
    output.loss.backward()
    return {"loss": output.loss.detach(),
            "grads": {name: p.grad.detach().clone() for name, p in model.named_parameters() if p.grad is not None}}


def main_clip(out_dir: str) -> None:
    serve_rank(out_dir, "clip_", lambda inputs: {
        "clip_even": run_clip_linear(inputs, inputs["even_split"]),
        "clip_uneven": run_clip_linear(inputs, inputs["uneven_split"]),
        "clip_ddp": run_clip_ddp(inputs),
    })
