"""Every loss in hfssl.losses computes in float32 under autocast (issue 28, item 7; README "Speed").

Under ``train.mixed_precision: bf16`` the losses are called inside the model's ``torch.autocast``
region, with the model's bf16 outputs. Each loss is checked twice against the same loss in float32
without autocast:

* float32 inputs under CPU bf16 autocast: the value and the gradient of every input equal the
  float32 ones to ``rtol=1e-6, atol=1e-7`` (float32 rounding of the same operations; before the
  fix, InfoNCE, MoCo v3, DINO, SwAV and CLIP formed their logits in bf16 and were off by about 1e-3
  relative);
* bf16 inputs (what an autocast forward hands the loss): the value is float32 and equals the
  float32 loss of the same (upcast) numbers to the same tolerance, and the gradient reaching each
  bf16 input is the float32 gradient rounded to bf16 (``rtol=2**-8``, bf16's rounding).

The inputs are rounded to bf16 first, so both computations see exactly the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from hfssl.losses import (
    BarlowTwinsLoss, BYOLLoss, CLIPLoss, DINOLoss, InfoNCELoss, MoCoV3Loss, NTXentLoss, SigLIPLoss, SimSiamLoss,
    SwAVLoss, VICRegLoss, sinkhorn_knopp,
)
from hfssl.losses.semi_supervised import masked_pseudo_label_loss, softmax_mse_consistency

RTOL, ATOL = 1e-6, 1e-7
BF16_RTOL = 2.0 ** -8


def _inputs(name: str) -> tuple[Callable[..., torch.Tensor], list[torch.Tensor], dict]:
    """``(loss function, tensor inputs in float32, other keyword arguments)`` for one loss."""
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).bfloat16().float()  # bf16-representable values

    if name == "ntxent":
        return NTXentLoss(temperature=0.1, gather_distributed=False), [randn(8, 16), randn(8, 16)], {}
    if name == "infonce":
        queue = F.normalize(randn(64, 16), dim=1)
        return lambda q, k: InfoNCELoss(temperature=0.2)(q, k, queue), [randn(8, 16), randn(8, 16)], {}
    if name == "moco_v3":
        return MoCoV3Loss(temperature=0.2, gather_distributed=False), [randn(8, 16) for _ in range(4)], {}
    if name == "byol":
        return BYOLLoss(), [randn(8, 16), randn(8, 16)], {}
    if name == "simsiam":
        return SimSiamLoss(), [randn(8, 16) for _ in range(4)], {}
    if name == "dino":
        center = randn(64) * 0.1
        return (lambda student, teacher: DINOLoss()(student, teacher, center, student_temperature=0.1,
                                                    teacher_temperature=0.04)), [randn(4, 8, 64), randn(2, 8, 64)], {}
    if name == "swav":
        codes = torch.softmax(randn(2, 8, 32) * 3, dim=-1)
        return lambda scores: SwAVLoss(temperature=0.1)(scores, codes), [F.normalize(randn(4, 8, 32), dim=-1).bfloat16().float()], {}
    if name == "clip":
        scale = torch.tensor(14.25)
        return CLIPLoss(gather_distributed=False), [randn(8, 16), randn(8, 16), scale], {}
    if name == "siglip":
        scale, bias = torch.tensor(10.0), torch.tensor(-2.5)
        return SigLIPLoss(gather_distributed=False), [randn(8, 16), randn(8, 16), scale, bias], {}
    if name == "vicreg":
        return lambda z1, z2: VICRegLoss(gather_distributed=False)(z1, z2).loss, [randn(16, 32), randn(16, 32)], {}
    if name == "barlow_twins":
        return (lambda z1, z2: BarlowTwinsLoss(gather_distributed=False)(z1, z2).loss,
                [randn(16, 32), randn(16, 32)], {})
    if name == "fixmatch":  # the weak view's logits make the (detached) targets
        weak = randn(16, 10) * 3
        return lambda strong: masked_pseudo_label_loss(weak, strong, 0.5).loss, [randn(16, 10)], {}
    if name == "mean_teacher":
        teacher = randn(16, 10)
        return lambda student: softmax_mse_consistency(student, teacher), [randn(16, 10)], {}
    raise KeyError(name)


LOSSES = ["ntxent", "infonce", "moco_v3", "byol", "simsiam", "dino", "swav", "clip", "siglip", "vicreg", "barlow_twins",
          "fixmatch", "mean_teacher"]


def _value_and_gradients(loss: Callable[..., torch.Tensor], inputs: list[torch.Tensor], autocast: bool
                         ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    leaves = [tensor.detach().clone().requires_grad_(True) for tensor in inputs]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        value = loss(*leaves)
    value.backward()
    return value.detach(), [leaf.grad for leaf in leaves]


@pytest.mark.parametrize("name", LOSSES)
def test_a_loss_under_bf16_autocast_equals_float32(name: str) -> None:
    loss, inputs, _ = _inputs(name)
    expected, expected_gradients = _value_and_gradients(loss, inputs, autocast=False)
    assert expected.dtype == torch.float32 and torch.isfinite(expected)

    value, gradients = _value_and_gradients(loss, inputs, autocast=True)
    assert value.dtype == torch.float32, name
    torch.testing.assert_close(value, expected, rtol=RTOL, atol=ATOL)
    for index, (gradient, expected_gradient) in enumerate(zip(gradients, expected_gradients)):
        if expected_gradient is None:  # a target the loss detaches (BYOL, SimSiam, DINO's teacher)
            assert gradient is None, f"{name} input {index}"
            continue
        torch.testing.assert_close(gradient, expected_gradient, rtol=RTOL, atol=ATOL, msg=f"{name} input {index}")

    # What an autocast forward hands the loss: bf16 tensors.
    value, gradients = _value_and_gradients(loss, [tensor.bfloat16() for tensor in inputs], autocast=True)
    assert value.dtype == torch.float32, name
    torch.testing.assert_close(value, expected, rtol=RTOL, atol=ATOL)
    for index, (gradient, expected_gradient) in enumerate(zip(gradients, expected_gradients)):
        if expected_gradient is None:
            assert gradient is None, f"{name} input {index}"
            continue
        assert gradient.dtype == torch.bfloat16
        torch.testing.assert_close(gradient.float(), expected_gradient.bfloat16().float(), rtol=BF16_RTOL, atol=ATOL,
                                   msg=f"{name} input {index}")


def test_sinkhorn_codes_under_bf16_autocast_equal_float32() -> None:
    scores = F.normalize(torch.randn(16, 32, generator=torch.Generator().manual_seed(1)), dim=1).bfloat16()
    expected = sinkhorn_knopp(scores.float())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        codes = sinkhorn_knopp(scores)
    assert codes.dtype == torch.float32
    torch.testing.assert_close(codes, expected, rtol=RTOL, atol=ATOL)
