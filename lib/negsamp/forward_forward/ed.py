"""Effective dimensionality (ED) of neural responses, its bounds and its gradients.

The effective dimensionality of a symmetric positive semi-definite matrix
``C`` with eigenvalues ``lambda_i`` is the participation ratio

    ED(C) = (sum_i lambda_i)**2 / sum_i lambda_i**2 = tr(C)**2 / ||C||_F**2.

Zhu et al. (2025) compute it on the *uncentred* second moment of a layer's
responses, ``M = Y^T Y / (m - 1)`` for ``m`` response vectors stacked as the
rows of ``Y``, with no mean subtracted.  That choice matters: for responses
``mu + noise`` the uncentred ED falls as the signal-to-noise ratio rises
(:func:`isotropic_signal_noise_ed`), while a covariance would ignore ``mu``.

All functions take float tensors with arbitrary leading batch dimensions and
work on the input's device.

References
----------
.. [1] Z. Zhu, Y. Qi, H. Ma, W. Lu and J. Feng, "Stochastic Forward-Forward
   learning through representational dimensionality compression", NeurIPS 2025.
"""

from __future__ import annotations

import torch


def _check_square(matrix: torch.Tensor, name: str = "matrix") -> None:
    if matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"{name} must have shape (..., N, N), got {tuple(matrix.shape)}")


def _check_responses(responses: torch.Tensor) -> None:
    if responses.ndim < 2:
        raise ValueError(f"responses must have shape (..., m, N), got {tuple(responses.shape)}")
    if responses.shape[-2] < 2:
        raise ValueError(f"second moments need at least m = 2 response vectors, got m = {responses.shape[-2]}")


# === The matrix and its effective dimensionality === #


def second_moment(responses: torch.Tensor) -> torch.Tensor:
    """Return the uncentred second moment ``Y^T Y / (m - 1)`` of ``m`` response vectors.

    Parameters
    ----------
    responses : Tensor, shape (..., m, N)
        ``m`` response vectors of ``N`` units each, as rows.

    Returns
    -------
    Tensor, shape (..., N, N)
        No mean is subtracted.  The divisor ``m - 1`` follows the authors' code [1]_.
    """
    _check_responses(responses)
    m = responses.shape[-2]
    gram = responses.transpose(-1, -2) @ responses
    return gram / (m - 1)


def covariance(responses: torch.Tensor) -> torch.Tensor:
    """Return the sample covariance of ``m`` response vectors, shape (..., N, N).

    This is :func:`second_moment` of the centred responses.  It serves only to
    contrast the centred ED with the uncentred one.
    """
    _check_responses(responses)
    return second_moment(responses - responses.mean(dim=-2, keepdim=True))


def effective_dimensionality(matrix: torch.Tensor, *, method: str = "trace", eps: float = 0.0) -> torch.Tensor:
    """Return the participation ratio ``tr(C)**2 / (||C||_F**2 + eps)`` of symmetric matrices.

    Parameters
    ----------
    matrix : Tensor, shape (..., N, N)
        Symmetric positive semi-definite matrices.
    method : {'trace', 'eigen'}
        ``'trace'`` uses the trace and Frobenius norm, which is fast and
        differentiable everywhere.  ``'eigen'`` uses ``eigvalsh`` and
        :func:`ed_from_eigenvalues`.  They agree on symmetric input.
    eps : float
        Added to the denominator of the trace form, as the authors' code adds
        ``1e-6``, so that a zero matrix gives 0.  Ignored by ``'eigen'``.

    Returns
    -------
    Tensor, shape (...)
    """
    _check_square(matrix)
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps!r}")
    if method == "trace":
        trace = matrix.diagonal(dim1=-2, dim2=-1).sum(-1)
        frobenius_squared = matrix.pow(2).sum(dim=(-2, -1))
        return trace**2 / (frobenius_squared + eps)
    if method == "eigen":
        return ed_from_eigenvalues(torch.linalg.eigvalsh(matrix))
    raise ValueError(f"unknown method {method!r}; use 'trace' or 'eigen'")


def ed_from_eigenvalues(eigenvalues: torch.Tensor) -> torch.Tensor:
    """Return ``(sum lambda)**2 / sum lambda**2`` over the last axis, shape (...)."""
    return eigenvalues.sum(-1) ** 2 / eigenvalues.pow(2).sum(-1)


def response_ed(responses: torch.Tensor, *, eps: float = 0.0) -> torch.Tensor:
    """Return the ED of the uncentred second moment of responses ``(..., m, N)``, shape (...)."""
    return effective_dimensionality(second_moment(responses), eps=eps)


# === Gradients === #


def ed_gradient_eigenvalues(eigenvalues: torch.Tensor) -> torch.Tensor:
    """Return ``d ED / d lambda_k = 2 S1 (S2 - S1 lambda_k) / S2**2`` with ``S_p = sum lambda**p``.

    The derivative changes sign at ``lambda_k = S2 / S1``: raising ED grows the
    small eigenvalues and shrinks the large ones.  Shape as ``eigenvalues``.
    """
    s1 = eigenvalues.sum(-1, keepdim=True)
    s2 = eigenvalues.pow(2).sum(-1, keepdim=True)
    return 2 * s1 * (s2 - s1 * eigenvalues) / s2**2


def ed_gradient_matrix(matrix: torch.Tensor) -> torch.Tensor:
    """Return ``d ED / d C = (2 S1 / S2) (I - (S1 / S2) C)`` for symmetric ``C``, shape (..., N, N).

    Here ``S1 = tr C`` and ``S2 = ||C||_F**2``.  The gradient is orthogonal to
    ``C`` itself (``<G, C> = 0``) because ED does not change when ``C`` is scaled.
    """
    _check_square(matrix)
    s1 = matrix.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None]
    s2 = matrix.pow(2).sum(dim=(-2, -1))[..., None, None]
    identity = torch.eye(matrix.shape[-1], dtype=matrix.dtype, device=matrix.device)
    return 2 * s1 / s2 * (identity - s1 / s2 * matrix)


def ed_gradient_responses(responses: torch.Tensor) -> torch.Tensor:
    """Return ``d ED(M) / d Y = 2 Y G / (m - 1)`` with ``M`` the second moment and ``G`` its ED gradient.

    Shape as ``responses``, (..., m, N).  Each response vector ``y_c`` moves
    along ``G y_c``, and ``<Y, dED/dY> = 0``.
    """
    _check_responses(responses)
    m = responses.shape[-2]
    return 2 * responses @ ed_gradient_matrix(second_moment(responses)) / (m - 1)


# === Closed forms === #


def isotropic_signal_noise_ed(snr: torch.Tensor | float, dim: int) -> torch.Tensor:
    """Return the ED of ``mu mu^T + sigma**2 I`` in ``dim`` dimensions as a function of ``snr``.

    With ``s = ||mu||**2 / sigma**2`` the result is ``(s + N)**2 / (s**2 + 2 s + N)``,
    which falls from ``N`` at ``s = 0`` towards 1 as ``s`` grows: compressing
    the uncentred ED of noisy copies raises their signal-to-noise ratio.
    """
    if dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    snr = torch.as_tensor(snr)
    if not snr.is_floating_point():
        snr = snr.to(torch.get_default_dtype())
    if torch.any(snr < 0):
        raise ValueError("snr must be >= 0")
    return (snr + dim) ** 2 / (snr**2 + 2 * snr + dim)


def signal_to_noise_ratio(responses: torch.Tensor) -> torch.Tensor:
    """Return ``||mean||**2 / sigma**2`` of ``m`` noisy responses (..., m, N), shape (...).

    ``sigma**2`` is the noise variance per unit, the trace of the sample
    covariance divided by ``N``, so that for ``mu + sigma * noise`` the value
    estimates the ``snr`` of :func:`isotropic_signal_noise_ed`.
    """
    _check_responses(responses)
    mean = responses.mean(dim=-2)
    noise_variance = covariance(responses).diagonal(dim1=-2, dim2=-1).mean(-1)
    return mean.pow(2).sum(-1) / noise_variance
