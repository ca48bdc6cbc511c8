"""The semi-supervised losses against their formulas on fixed tensors: FixMatch's masked cross-entropy (only
confident rows count, the sum divided by every unlabelled row), Pseudo-Label's thresholding, Mean Teacher's
softmax-MSE consistency and its sigmoid ramp-up."""

from __future__ import annotations

import math

import pytest
import torch

from hfssl.losses.semi_supervised import masked_pseudo_label_loss, sigmoid_rampup, softmax_mse_consistency


def _naive_masked_loss(weak: torch.Tensor, strong: torch.Tensor, threshold: float) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float64)
    for row in range(weak.shape[0]):
        probabilities = [math.exp(v) for v in weak[row].tolist()]
        probabilities = [p / sum(probabilities) for p in probabilities]
        confidence = max(probabilities)
        if confidence >= threshold:
            target = probabilities.index(confidence)
            exps = [math.exp(v) for v in strong[row].tolist()]
            total += -math.log(exps[target] / sum(exps))
    return total / weak.shape[0]  # every unlabelled row, confident or not (FixMatch eq. 4)


def test_fixmatch_masked_loss_counts_only_confident_rows_over_all_rows():
    weak = torch.tensor([[4.0, 0.0, 0.0], [0.1, 0.2, 0.0], [0.0, 0.0, 5.0], [1.0, 1.0, 0.9]], dtype=torch.float64)
    strong = torch.tensor([[0.5, 0.2, -0.1], [2.0, 0.0, 0.0], [0.3, 0.1, 0.4], [0.0, 0.0, 0.0]], dtype=torch.float64,
                          requires_grad=True)
    result = masked_pseudo_label_loss(weak, strong, 0.95)
    # Rows 0 (p = e^4 / (e^4 + 2) = 0.965) and 2 (0.987) pass tau = 0.95; rows 1 and 3 do not.
    assert result.mask.tolist() == [1.0, 0.0, 1.0, 0.0]
    assert result.pseudo_labels.tolist() == [0, 1, 2, 0]
    torch.testing.assert_close(result.loss, _naive_masked_loss(weak, strong.detach(), 0.95))
    expected = (-torch.log_softmax(strong.detach()[0], 0)[0] - torch.log_softmax(strong.detach()[2], 0)[2]) / 4
    torch.testing.assert_close(result.loss, expected)
    result.loss.backward()
    assert strong.grad[1].abs().sum() == 0 and strong.grad[3].abs().sum() == 0  # unconfident rows: no gradient
    assert strong.grad[0].abs().sum() > 0


def test_pseudo_label_thresholding_on_the_same_view():
    logits = torch.tensor([[3.0, 0.0], [0.0, 0.5], [-2.0, 2.0]], dtype=torch.float64, requires_grad=True)
    confidence = torch.softmax(logits.detach(), 1).amax(1)  # 0.953, 0.622, 0.982
    for threshold, mask in ((0.95, [1.0, 0.0, 1.0]), (0.97, [0.0, 0.0, 1.0]), (0.0, [1.0, 1.0, 1.0])):
        result = masked_pseudo_label_loss(logits, logits, threshold)
        assert result.mask.tolist() == mask, threshold
        torch.testing.assert_close(result.loss, _naive_masked_loss(logits.detach(), logits.detach(), threshold))
    at_threshold = masked_pseudo_label_loss(logits, logits, float(confidence[0]))  # a row at tau counts (>=)
    assert at_threshold.mask.tolist() == [1.0, 0.0, 1.0]
    torch.testing.assert_close(at_threshold.loss, masked_pseudo_label_loss(logits, logits, 0.95).loss)
    result = masked_pseudo_label_loss(logits, logits, 0.95)
    result.loss.backward()
    # The target is detached: the gradient is the cross-entropy's through the prediction side only.
    probabilities = torch.softmax(logits.detach(), 1)
    expected = (probabilities - torch.nn.functional.one_hot(probabilities.argmax(1), 2)) * torch.tensor(
        [[1.0], [0.0], [1.0]], dtype=torch.float64) / 3
    torch.testing.assert_close(logits.grad, expected)


def test_mean_teacher_consistency_is_the_mean_squared_probability_difference():
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]], dtype=torch.float64, requires_grad=True)
    teacher = torch.tensor([[0.0, 0.0, 0.0], [2.0, -1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    loss = softmax_mse_consistency(student, teacher)
    naive = 0.0
    for row in range(2):
        s = [math.exp(v) for v in student[row].tolist()]
        t = [math.exp(v) for v in teacher[row].tolist()]
        naive += sum((a / sum(s) - b / sum(t)) ** 2 for a, b in zip(s, t))
    assert loss.item() == pytest.approx(naive / 6, rel=1e-12)  # mean over 2 rows x 3 classes
    loss.backward()
    assert teacher.grad is None and student.grad.abs().sum() > 0  # no gradient to the EMA teacher


def test_sigmoid_rampup_formula():
    assert sigmoid_rampup(0.0) == pytest.approx(math.exp(-5.0))
    assert sigmoid_rampup(0.5) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(1.0) == 1.0 and sigmoid_rampup(3.0) == 1.0 and sigmoid_rampup(-1.0) == pytest.approx(math.exp(-5.0))


def test_mismatched_logits_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        masked_pseudo_label_loss(torch.zeros(3, 2), torch.zeros(3, 4), 0.9)
    with pytest.raises(ValueError, match="same shape"):
        softmax_mse_consistency(torch.zeros(3, 2), torch.zeros(2, 2))
