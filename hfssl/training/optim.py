"""Optimisers: AdamW, SGD and LARS, with no weight decay on norms and biases.

Parameter groups carry a ``weight_decay`` and, for LARS, a ``lars_exclude`` flag (biases and norm
parameters are neither decayed nor trust-ratio scaled, as in SimCLR/BYOL's LARS, You et al. 2017).
Teacher parameters (``requires_grad=False``) are never given to the optimizer.
"""

from __future__ import annotations

import torch
from torch import nn

from hfssl.recipe import OptimConfig

_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def parameter_groups(model: nn.Module, optim: OptimConfig) -> list[dict]:
    """Split trainable parameters into decayed weights and undecayed biases / norm parameters."""
    no_decay_ids: set[int] = set()
    if optim.exclude_bias_and_norm:
        for module in model.modules():
            for name, parameter in module.named_parameters(recurse=False):
                if isinstance(module, _NORM_TYPES) or name.endswith("bias") or parameter.ndim <= 1:
                    no_decay_ids.add(id(parameter))
    # A model may scale the learning rate per parameter (layer-wise decay when fine-tuning, as in
    # MAE / BEiT): ``parameter_lr_scales() -> {name: scale}``; each (decay, scale) pair is a group.
    scales = model.parameter_lr_scales() if hasattr(model, "parameter_lr_scales") else {}
    grouped: dict[tuple[bool, float], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        key = (id(parameter) not in no_decay_ids, float(scales.get(name, 1.0)))
        grouped.setdefault(key, []).append(parameter)
    # ``decay`` marks the groups a scheduled ``weight_decay`` applies to (hfssl.training.trainer).
    groups = []
    for (decayed, scale), parameters in sorted(grouped.items(), key=lambda item: (not item[0][0], -item[0][1])):
        group = {"params": parameters, "weight_decay": optim.weight_decay if decayed else 0.0,
                 "lars_exclude": not decayed, "decay": decayed}
        if scales:
            group["lr"] = optim.lr * scale
            group["lr_scale"] = scale
        groups.append(group)
    return groups


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratios (You et al. 2017, "Large Batch Training of
    Convolutional Networks"), as used by SimCLR and BYOL.

    For each parameter ``w`` with gradient ``g`` not in an excluded group:
    ``g <- g + wd * w``; ``g <- g * eta * ||w|| / ||g||`` (when both norms are > 0);
    ``v <- momentum * v + g``; ``w <- w - lr * v``.
    """

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 1e-3) -> None:
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 - torch.optim signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for parameter in group["params"]:
                if parameter.grad is None:
                    continue
                grad = parameter.grad
                if group["weight_decay"] != 0:
                    grad = grad.add(parameter, alpha=group["weight_decay"])
                if not group["lars_exclude"]:
                    weight_norm = torch.linalg.vector_norm(parameter)
                    grad_norm = torch.linalg.vector_norm(grad)
                    trust = torch.where(
                        (weight_norm > 0) & (grad_norm > 0),
                        group["trust_coefficient"] * weight_norm / grad_norm,
                        torch.ones_like(weight_norm),
                    )
                    grad = grad * trust
                state = self.state[parameter]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(group["momentum"]).add_(grad)
                parameter.add_(state["momentum_buffer"], alpha=-group["lr"])
        return loss


def build_optimizer(model: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """Create the optimizer named by ``optim.name`` over :func:`parameter_groups`."""
    groups = parameter_groups(model, optim)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    if optim.name == "adamw":
        return torch.optim.AdamW(groups, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps)
    if optim.name == "sgd":
        has_sparse = any(getattr(module, "sparse", False) for module in model.modules())
        return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum,
                               foreach=False if has_sparse else None)
    return LARS(groups, lr=optim.lr, momentum=optim.momentum, trust_coefficient=optim.lars_trust_coefficient)
