"""DINO's loss and centre, SwAV's Sinkhorn-Knopp codes and swapped prediction against plain references
(naive loops, numpy), values and gradients in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hfssl.losses import DINOLoss, SwAVLoss, dino_center_update, sinkhorn_knopp


# ---------------------------------------------------------------- DINO


def naive_dino(student: torch.Tensor, teacher: torch.Tensor, center: torch.Tensor, tau_s: float, tau_t: float
               ) -> torch.Tensor:
    """Algorithm 1 of Caron et al. 2021 written out: for every teacher crop t and student crop s != t,
    the batch mean of H(P_t, P_s) with P_t = softmax((t - c) / tau_t), P_s = softmax(s / tau_s), one
    image and one prototype at a time; the mean over the pairs."""
    total, pairs = student.new_zeros(()), 0
    num_views, batch, k = student.shape
    for t in range(teacher.shape[0]):
        for s in range(num_views):
            if s == t:
                continue
            term = student.new_zeros(())
            for b in range(batch):
                t_exp = [math.exp((float(teacher[t, b, j]) - float(center[j])) / tau_t) for j in range(k)]
                t_sum = sum(t_exp)
                s_norm = torch.logsumexp(student[s, b] / tau_s, dim=0)
                for j in range(k):
                    term = term - (t_exp[j] / t_sum) * (student[s, b, j] / tau_s - s_norm)
            total = total + term / batch
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("num_global,num_local", [(2, 0), (2, 3), (1, 2), (3, 1)])
def test_dino_loss_matches_naive_loop_values_and_gradients(num_global, num_local):
    generator = torch.Generator().manual_seed(num_global * 10 + num_local)
    student = torch.randn(num_global + num_local, 3, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(num_global, 3, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    center = torch.randn(5, generator=generator, dtype=torch.float64)
    loss = DINOLoss()(student, teacher, center, 0.1, 0.04)
    expected = naive_dino(student, teacher.detach(), center, 0.1, 0.04)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    grad, = torch.autograd.grad(loss, student, retain_graph=True)
    expected_grad, = torch.autograd.grad(expected, student)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)
    # Stop-gradient: the teacher receives nothing.
    assert torch.autograd.grad(loss, teacher, allow_unused=True)[0] is None


def test_dino_loss_centre_and_sharpening_change_the_targets():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(4, 6, 8, generator=generator, dtype=torch.float64)
    teacher = torch.randn(2, 6, 8, generator=generator, dtype=torch.float64)
    zero = torch.zeros(8, dtype=torch.float64)
    base = DINOLoss()(student, teacher, zero, 0.1, 0.04)
    # A constant centre cancels in the softmax; a non-constant one does not.
    torch.testing.assert_close(DINOLoss()(student, teacher, zero + 3.0, 0.1, 0.04), base)
    assert not torch.isclose(DINOLoss()(student, teacher, torch.linspace(0, 1, 8, dtype=torch.float64), 0.1, 0.04), base)
    # Two identical crops, student equal to teacher, equal temperatures: the loss is the teacher's entropy.
    teacher = teacher[:1].expand(2, -1, -1)
    same = DINOLoss()(teacher.clone(), teacher, zero, 0.1, 0.1)
    targets = torch.softmax(teacher / 0.1, dim=-1)
    entropy = -(targets * torch.log(targets)).sum(-1).mean()
    torch.testing.assert_close(same, entropy)


def test_dino_center_update_follows_its_formula():
    center = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    teacher = torch.tensor([[[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], [[0.0, 0.0, 6.0], [4.0, 4.0, 2.0]]],
                           dtype=torch.float64)  # (G=2, B=2, K=3)
    batch_center = teacher.reshape(-1, 3).mean(dim=0)  # [2, 2, 3]
    out = dino_center_update(center, batch_center, 0.9)
    assert out is center  # in place
    torch.testing.assert_close(center, torch.tensor([0.9 * 1 + 0.1 * 2, 0.9 * -2 + 0.1 * 2, 0.9 * 0.5 + 0.1 * 3],
                                                    dtype=torch.float64))


def test_dino_loss_rejects_bad_inputs():
    with pytest.raises(ValueError, match="batch"):
        DINOLoss()(torch.randn(3, 2, 4), torch.randn(2, 3, 4), torch.zeros(4), 0.1, 0.04)
    with pytest.raises(ValueError, match="teacher views"):
        DINOLoss()(torch.randn(2, 2, 4), torch.randn(3, 2, 4), torch.zeros(4), 0.1, 0.04)
    with pytest.raises(ValueError, match="teacher_temperature"):
        DINOLoss()(torch.randn(3, 2, 4), torch.randn(2, 2, 4), torch.zeros(4), 0.1, 0.0)


# ---------------------------------------------------------------- SwAV


def numpy_sinkhorn(scores: np.ndarray, epsilon: float, iterations: int) -> np.ndarray:
    """The paper's Algorithm 1 (``sinkhorn``) in plain numpy, on one process."""
    q = np.exp(scores / epsilon).T  # (K, B)
    k, b = q.shape
    q = q / q.sum()
    for _ in range(iterations):
        q = q / q.sum(axis=1, keepdims=True) / k
        q = q / q.sum(axis=0, keepdims=True) / b
    return (q * b).T


@pytest.mark.parametrize("batch,prototypes", [(6, 4), (4, 9), (32, 32)])
@pytest.mark.parametrize("epsilon,iterations", [(0.05, 3), (0.5, 1), (0.1, 10)])
def test_sinkhorn_matches_plain_numpy(batch, prototypes, epsilon, iterations):
    generator = torch.Generator().manual_seed(batch + prototypes)
    # Cosine-like scores in [-1, 1], as SwAV's (unit features against unit prototypes).
    scores = torch.rand(batch, prototypes, generator=generator, dtype=torch.float64) * 2 - 1
    codes = sinkhorn_knopp(scores, epsilon, iterations)
    expected = numpy_sinkhorn(scores.numpy(), epsilon, iterations)
    np.testing.assert_allclose(codes.numpy(), expected, rtol=1e-10, atol=1e-14)
    # Rows sum to 1 (the last step normalises columns) and the prototype marginals approach B / K.
    np.testing.assert_allclose(codes.sum(dim=1).numpy(), np.ones(batch), rtol=1e-12)
    assert codes.min() >= 0


def test_sinkhorn_equipartitions_and_does_not_overflow():
    # Every sample prefers prototype 0; the codes still spread the batch over the prototypes.
    scores = torch.zeros(8, 4, dtype=torch.float64)
    scores[:, 0] = 1.0
    scores += torch.linspace(0, 0.1, 8, dtype=torch.float64).unsqueeze(1) * torch.arange(4, dtype=torch.float64)
    codes = sinkhorn_knopp(scores, 0.05, 50)
    np.testing.assert_allclose(codes.sum(dim=0).numpy(), np.full(4, 2.0), rtol=1e-6)
    # Scores far beyond cosines would overflow exp(s / 0.05) in float32 without the shift.
    big = torch.tensor([[100.0, 0.0], [0.0, 100.0]], dtype=torch.float32)
    assert torch.isfinite(sinkhorn_knopp(big, 0.05, 3)).all()
    # float16/bfloat16 scores are computed in float32.
    assert sinkhorn_knopp(torch.rand(4, 3).to(torch.bfloat16)).dtype == torch.float32


def naive_swav(scores: torch.Tensor, codes: torch.Tensor, temperature: float) -> torch.Tensor:
    """The official ``main_swav.py`` loop: for each assigned crop a, the mean over crops v != a of
    -mean_b sum_k q_a log softmax(z_v / tau), then the mean over the assigned crops."""
    loss = scores.new_zeros(())
    num_views, batch, k = scores.shape
    for a in range(codes.shape[0]):
        subloss = scores.new_zeros(())
        for v in range(num_views):
            if v == a:
                continue
            term = scores.new_zeros(())
            for b in range(batch):
                log_norm = torch.logsumexp(scores[v, b] / temperature, dim=0)
                for j in range(k):
                    term = term - codes[a, b, j] * (scores[v, b, j] / temperature - log_norm)
            subloss = subloss + term / batch
        loss = loss + subloss / (num_views - 1)
    return loss / codes.shape[0]


@pytest.mark.parametrize("num_views,assigned", [(2, 2), (6, 2), (3, 1)])
def test_swav_loss_matches_naive_loop_values_and_gradients(num_views, assigned):
    generator = torch.Generator().manual_seed(num_views * 10 + assigned)
    scores = torch.randn(num_views, 3, 5, generator=generator, dtype=torch.float64, requires_grad=True)
    codes = torch.softmax(torch.randn(assigned, 3, 5, generator=generator, dtype=torch.float64), dim=-1)
    loss = SwAVLoss(0.1)(scores, codes)
    expected = naive_swav(scores, codes, 0.1)
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    grad, = torch.autograd.grad(loss, scores)
    expected_grad, = torch.autograd.grad(expected, scores)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-10, atol=1e-12)


def test_swav_loss_rejects_bad_inputs():
    with pytest.raises(ValueError, match="temperature"):
        SwAVLoss(0.0)
    with pytest.raises(ValueError, match="assigned"):
        SwAVLoss()(torch.randn(2, 3, 4), torch.randn(3, 3, 4))
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn_knopp(torch.randn(3, 4), epsilon=0.0)
