"""Optimisers (AdamW, SGD, LARS) over parameter groups, and gradient clipping.

Parameter groups carry a ``weight_decay`` and, for LARS, a ``lars_exclude`` flag (biases and norm
parameters are neither decayed nor trust-ratio scaled, as in SimCLR/BYOL's LARS, You et al. 2017).
Teacher parameters (``requires_grad=False``) are never given to the optimizer.

A model declares named groups with their own learning-rate rule
(:meth:`hfssl.modeling_utils.HfsslPreTrainedModel.parameter_groups`, changed by a recipe's
``optim.parameter_groups``) and per-parameter scales (``parameter_lr_scales``, layer-wise decay).
Each optimiser group is one (declared group, decayed, scale) triple and records ``group`` (its name,
``default`` for the undeclared parameters), ``lr_scale`` and ``constant_lr``; the default group's
parameters come first, so ``param_groups[0]`` keeps the recipe's learning rate, and a model that
declares nothing gets the same groups, in the same order, as before groups existed (checkpoints
written then still resume).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch
from torch import nn

from hfssl.modeling_utils import HfsslPreTrainedModel, ParameterGroup
from hfssl.recipe import OptimConfig
from hfssl.settings import RecipeError, suggest

_NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)

#: The name of the group of parameters no declared group holds.
DEFAULT_GROUP = "default"


def declared_groups(model: nn.Module, optim: OptimConfig) -> list[ParameterGroup]:
    """The model's declared parameter groups with the recipe's ``optim.parameter_groups`` changes
    applied; a plain torch module (not an hfssl model) declares none.

    Raises:
        RecipeError: for a changed group the model does not declare (with a suggestion).
    """
    declared = model.parameter_groups() if isinstance(model, HfsslPreTrainedModel) else []
    by_name = {group.name: group for group in declared}
    for name, settings in optim.parameter_groups.items():
        if name not in by_name:
            known = suggest(name, sorted(by_name)) if by_name else f" {type(model).__name__} declares no groups"
            raise RecipeError(f"optim.parameter_groups.{name}: the model has no parameter group {name!r}.{known}")
        changes = {key: value for key, value in dataclasses.asdict(settings).items() if value is not None}
        by_name[name] = dataclasses.replace(by_name[name], **changes)
    return [by_name[group.name] for group in declared]


def _no_decay_ids(model: nn.Module, optim: OptimConfig) -> set[int]:
    """Biases, norm parameters and other vectors (``optim.exclude_bias_and_norm``)."""
    ids: set[int] = set()
    if optim.exclude_bias_and_norm:
        for module in model.modules():
            for name, parameter in module.named_parameters(recurse=False):
                if isinstance(module, _NORM_TYPES) or name.endswith("bias") or parameter.ndim <= 1:
                    ids.add(id(parameter))
    return ids


def _membership(model: nn.Module, groups: list[ParameterGroup]) -> dict[str, int]:
    """Parameter name -> index of its declared group (1-based; 0 is the default group)."""
    names = {name for name, _ in model.named_parameters()}
    member: dict[str, int] = {}
    for index, group in enumerate(groups, start=1):
        for name in group.parameters:
            if name not in names:
                raise ValueError(f"{type(model).__name__}.parameter_groups(): group {group.name!r} names "
                                 f"{name!r}, which is not a parameter of the model")
            if name in member:
                raise ValueError(f"{type(model).__name__}.parameter_groups(): {name!r} is in two groups")
            member[name] = index
    return member


def parameter_groups(model: nn.Module, optim: OptimConfig) -> list[dict]:
    """Split trainable parameters by declared group, decayed or not, and learning-rate scale."""
    groups = declared_groups(model, optim)
    scales = model.parameter_lr_scales() if isinstance(model, HfsslPreTrainedModel) else {}
    no_decay, member = _no_decay_ids(model, optim), _membership(model, groups)
    rules: list[ParameterGroup | None] = [None, *groups]  # index 0: the default group, the recipe's rule
    grouped: dict[tuple[int, bool, float], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        index = member.get(name, 0)
        rule = rules[index]
        decayed = id(parameter) not in no_decay if rule is None or rule.weight_decay is None else rule.weight_decay
        grouped.setdefault((index, decayed, float(scales.get(name, 1.0))), []).append(parameter)
    result = []
    for (index, decayed, scale), parameters in sorted(grouped.items(),
                                                      key=lambda item: (item[0][0], not item[0][1], -item[0][2])):
        # ``decay`` marks the groups a scheduled ``weight_decay`` applies to (hfssl.training.trainer).
        group = {"params": parameters, "weight_decay": optim.weight_decay if decayed else 0.0,
                 "lars_exclude": not decayed, "decay": decayed}
        if scales or groups:
            rule = rules[index]
            lr_scale = scale * (1.0 if rule is None else rule.lr_scale)
            group.update(lr=optim.lr * lr_scale, lr_scale=lr_scale, group=DEFAULT_GROUP if rule is None else rule.name,
                         constant_lr=rule is not None and rule.constant_lr)
        result.append(group)
    return result


def clip_gradients_per_parameter(parameters: Iterable[nn.Parameter], max_norm: float) -> None:
    """Scale each parameter's gradient by ``max_norm / (its L2 norm + 1e-6)`` when that is below 1,
    in place, as DINO's ``utils.clip_gradients`` (``--clip_grad 3.0``): every parameter is clipped on
    its own, unlike ``torch.nn.utils.clip_grad_norm_``, which scales all gradients by their joint norm.
    Parameters without a gradient are skipped; one fused pass over the gradients (``_foreach``)."""
    grads = [parameter.grad for parameter in parameters if parameter.grad is not None]
    if not grads:
        return
    norms = torch._foreach_norm(grads)
    torch._foreach_mul_(grads, [torch.clamp(max_norm / (norm + 1e-6), max=1.0) for norm in norms])


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
