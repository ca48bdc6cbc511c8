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
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if id(parameter) in no_decay_ids else decay).append(parameter)
    # ``decay`` marks the groups a scheduled ``weight_decay`` applies to (hfssl.training.trainer).
    groups = [{"params": decay, "weight_decay": optim.weight_decay, "lars_exclude": False, "decay": True}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_exclude": True, "decay": False})
    return [group for group in groups if group["params"]]


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
