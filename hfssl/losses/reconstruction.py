"""Losses of the autoencoder family (issue 22): the reconstruction error and the regularisers of the sparse,
variational and contractive autoencoders. Plain functions over tensors; each returns a scalar (the batch mean).

* :func:`squared_error`: mean over pixels of ``(x_hat - x)^2`` (the plain and denoising autoencoders; the
  denoising one compares with the clean image);
* :func:`l1_sparsity`: ``sum_j |h_j|`` per example, averaged over the batch (Ng's sparse autoencoder notes,
  the L1 form);
* :func:`kl_sparsity`: ``sum_j KL(rho || rho_hat_j) = rho log(rho / rho_hat_j) + (1 - rho) log((1 - rho) /
  (1 - rho_hat_j))`` with ``rho_hat_j`` the batch mean of the code unit ``j`` in (0, 1) (Ng 2011, sec. 2.3);
* :func:`gaussian_kl`: ``KL(N(mu, diag(exp(logvar))) || N(0, I)) = -1/2 sum_j (1 + logvar_j - mu_j^2 -
  exp(logvar_j))`` per example (Kingma & Welling 2014, appendix B), averaged over the batch;
* :func:`gaussian_nll`: ``sum_pixels (x_hat - x)^2 / (2 sigma^2)`` per example (the negative log-likelihood of
  a Gaussian decoder of fixed variance, up to a constant), averaged over the batch;
* :func:`contractive_penalty`: ``||J_f(x)||_F^2``, the squared Frobenius norm of the Jacobian of the code with
  respect to the input (Rifai et al. 2011), per example, averaged: exactly (one backward pass per code unit)
  or by the random-projection estimate ``E_v ||J^T v||^2`` with ``v ~ N(0, I)`` (unbiased; as many
  backward passes as projections).
"""

from __future__ import annotations

import torch

from hfssl.losses.precision import float32_loss

#: ``rho_hat`` is clamped into ``[EPS, 1 - EPS]`` so the KL stays finite for saturated units.
EPS = 1e-6


@float32_loss
def squared_error(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every pixel and example."""
    if reconstruction.shape != target.shape:
        raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} differ in shape")
    return (reconstruction - target).pow(2).mean()


@float32_loss
def l1_sparsity(code: torch.Tensor) -> torch.Tensor:
    """``mean_b sum_j |h_bj|`` of a code ``(B, k)``."""
    return code.abs().sum(dim=1).mean()


@float32_loss
def kl_sparsity(code: torch.Tensor, target: float) -> torch.Tensor:
    """``sum_j KL(target || mean_b h_bj)`` of a code ``(B, k)`` with values in (0, 1) (sigmoid units)."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"the sparsity target must be in (0, 1), got {target!r}")
    rho_hat = code.mean(dim=0).clamp(EPS, 1.0 - EPS)
    rho = torch.as_tensor(target, dtype=rho_hat.dtype, device=rho_hat.device)
    return (rho * torch.log(rho / rho_hat) + (1 - rho) * torch.log((1 - rho) / (1 - rho_hat))).sum()


@float32_loss
def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``mean_b KL(N(mean_b, exp(logvar_b)) || N(0, I))`` of ``(B, k)`` posteriors (closed form)."""
    return (-0.5 * (1.0 + logvar - mean.pow(2) - logvar.exp()).sum(dim=1)).mean()


@float32_loss
def gaussian_nll(reconstruction: torch.Tensor, target: torch.Tensor, std: float) -> torch.Tensor:
    """``mean_b sum_pixels (x_hat - x)^2 / (2 std^2)``: a fixed-variance Gaussian decoder's NLL up to a constant."""
    if reconstruction.shape != target.shape:
        raise ValueError(f"reconstruction {tuple(reconstruction.shape)} and target {tuple(target.shape)} differ in shape")
    return ((reconstruction - target).pow(2).flatten(1).sum(dim=1) / (2.0 * std ** 2)).mean()


def contractive_penalty(code: torch.Tensor, inputs: torch.Tensor, projections: torch.Tensor | None = None
                        ) -> torch.Tensor:
    """``mean_b ||d code_b / d inputs_b||_F^2`` with a graph for the gradient (the penalty is trained).

    Args:
        code: ``(B, k)``, computed from ``inputs`` (which must require grad).
        inputs: ``(B, ...)``.
        projections: ``None`` for the exact norm (``k`` backward passes); or ``(S, B, k)`` standard normal
            draws for the unbiased estimate ``1/S sum_s ||J^T v_s||^2`` (``S`` backward passes).

    The Jacobian is per example: the gradient of ``sum_b code_b . v_b`` with respect to ``inputs_b`` is
    ``J_b^T v_b`` when examples do not interact (a BatchNorm in training mode couples them through its batch
    statistics, which adds small cross-example terms).
    """
    if code.ndim != 2 or code.shape[0] != inputs.shape[0]:
        raise ValueError(f"code must be (B, k) for inputs (B, ...), got {tuple(code.shape)} and {tuple(inputs.shape)}")
    if projections is None:
        directions = [torch.zeros_like(code).index_fill_(1, torch.tensor([j], device=code.device), 1.0)
                      for j in range(code.shape[1])]
        scale = 1.0
    else:
        if projections.ndim != 3 or projections.shape[1:] != code.shape:
            raise ValueError(f"projections must be (S, B, k) = (S, {code.shape[0]}, {code.shape[1]}), "
                             f"got {tuple(projections.shape)}")
        directions = list(projections.to(code.dtype))
        scale = 1.0 / projections.shape[0]
    total = code.new_zeros(code.shape[0])
    for direction in directions:
        (gradient,) = torch.autograd.grad(code, inputs, grad_outputs=direction, create_graph=True, retain_graph=True)
        total = total + gradient.pow(2).flatten(1).sum(dim=1)
    return (total * scale).mean()
