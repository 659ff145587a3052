"""Hoeffding decomposition and exact variance of a class-wise U-statistic.

Given ``N_r = n`` anchors-or-positives from class ``r`` and ``M`` negatives
from the other classes, ``U_r`` is a two-sample U-statistic of degree
``(a, b) = (2, k)`` with a kernel ``h`` symmetric within each sample.  Two
kernel evaluations that share ``c`` points of the first sample and ``d`` of
the second have covariance ``sigma2[c, d]``, the variance of
``h_{c,d} = E[h | c first-sample and d second-sample arguments]``.  The
number of shared points is hypergeometric, so

    Var U_r = sum_{c, d} P(c shared of n, degree a) P(d shared of M, degree b) sigma2[c, d],

with ``sigma2[0, 0] = 0``.  This is the Hoeffding decomposition of a
two-sample U-statistic.  The first-order (Hajek) approximation keeps only
``a**2 sigma2[1, 0] / n + b**2 sigma2[0, 1] / M``.  The tests check the
exact formula against enumeration of every pool of a tiny world.
"""

from __future__ import annotations

import math

import torch

from .evaluator import _check_reduction
from .sampling import DiscreteWorld
from .shapes import check_negatives

__all__ = [
    "first_order_variance",
    "hinge_kernel_tensor",
    "hoeffding_components",
    "overlap_probabilities",
    "two_sample_ustat_variance",
]


def overlap_probabilities(n: int, degree: int) -> torch.Tensor:
    """Probability that two independent uniform ``degree``-subsets of ``n`` items share ``c`` items.

    ``P(c) = C(degree, c) C(n - degree, degree - c) / C(n, degree)`` for
    ``c = 0 .. degree`` (hypergeometric).

    Returns
    -------
    Tensor, shape (degree + 1,), float64
    """
    if isinstance(n, bool) or not isinstance(n, int) or isinstance(degree, bool) or not isinstance(degree, int):
        raise ValueError(f"n and degree must be integers, got n={n!r}, degree={degree!r}")
    if degree < 1 or n < degree:
        raise ValueError(f"need 1 <= degree <= n, got degree={degree}, n={n}")
    total = math.comb(n, degree)
    return torch.tensor([math.comb(degree, c) * math.comb(n - degree, degree - c) / total
                         for c in range(degree + 1)], dtype=torch.float64)


def _contract_last(tensor: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    return torch.tensordot(tensor, probs, dims=([tensor.ndim - 1], [0]))


def _check_symmetric(kernel: torch.Tensor, first_degree: int) -> None:
    groups = [range(first_degree), range(first_degree, kernel.ndim)]
    for group in groups:
        axes = list(group)
        for left, right in zip(axes, axes[1:]):
            if not torch.allclose(kernel, kernel.transpose(left, right), rtol=0, atol=1e-12):
                raise ValueError(f"kernel is not symmetric in axes {left} and {right}. Symmetrise it first")


def hoeffding_components(kernel: torch.Tensor, first_probs: torch.Tensor, second_probs: torch.Tensor,
                         first_degree: int) -> tuple[float, torch.Tensor]:
    """Mean ``theta`` and the covariances ``sigma2[c, d]`` of a discrete two-sample kernel.

    Parameters
    ----------
    kernel : Tensor, shape (m,) * a + (s,) * b
        Kernel values on every combination of support points; symmetric
        within the first ``a = first_degree`` axes and within the rest.
    first_probs : Tensor, shape (m,)
        Distribution of a first-sample point.
    second_probs : Tensor, shape (s,)
        Distribution of a second-sample point.
    first_degree : int
        Number ``a`` of first-sample arguments.

    Returns
    -------
    theta : float
        ``E h``.
    sigma2 : Tensor, shape (a + 1, b + 1)
        ``Var E[h | c first and d second arguments]``; ``sigma2[0, 0] = 0``.
    """
    a = first_degree
    b = kernel.ndim - a
    if a < 1 or b < 1:
        raise ValueError(f"kernel needs at least one axis per sample, got {kernel.ndim} axes with first_degree={a}")
    if any(size != first_probs.shape[0] for size in kernel.shape[:a]) or \
            any(size != second_probs.shape[0] for size in kernel.shape[a:]):
        raise ValueError(f"kernel shape {tuple(kernel.shape)} does not match {first_probs.shape[0]} first-sample "
                         f"and {second_probs.shape[0]} second-sample support points")
    kernel = kernel.to(torch.float64)
    p = first_probs.to(torch.float64)
    q = second_probs.to(torch.float64)
    _check_symmetric(kernel, a)

    sigma2 = torch.zeros(a + 1, b + 1, dtype=torch.float64)
    theta = kernel
    for _ in range(b):
        theta = _contract_last(theta, q)
    for _ in range(a):
        theta = _contract_last(theta, p)
    theta = float(theta)
    for c in range(a + 1):
        for d in range(b + 1):
            conditional = kernel
            for _ in range(b - d):
                conditional = _contract_last(conditional, q)
            for _ in range(a - c):  # the first-sample axes to average over sit at positions c .. a - 1
                conditional = torch.tensordot(conditional, p, dims=([c], [0]))
            square = conditional**2
            for _ in range(d):
                square = _contract_last(square, q)
            for _ in range(c):
                square = _contract_last(square, p)
            sigma2[c, d] = float(square) - theta**2
    sigma2[0, 0] = 0.0
    return theta, sigma2


def two_sample_ustat_variance(sigma2: torch.Tensor, first_size: int, second_size: int) -> float:
    """Exact variance of a two-sample U-statistic with ``first_size`` and ``second_size`` points.

    Parameters
    ----------
    sigma2 : Tensor, shape (a + 1, b + 1)
        From :func:`hoeffding_components`.
    first_size, second_size : int
        Sample sizes ``n >= a`` and ``M >= b``.
    """
    a, b = sigma2.shape[0] - 1, sigma2.shape[1] - 1
    first = overlap_probabilities(first_size, a)
    second = overlap_probabilities(second_size, b)
    return float((first.unsqueeze(1) * second.unsqueeze(0) * sigma2).sum())


def first_order_variance(sigma2: torch.Tensor, first_size: int, second_size: int) -> float:
    """First-order (Hajek) approximation ``a**2 sigma2[1, 0] / n + b**2 sigma2[0, 1] / M``."""
    a, b = sigma2.shape[0] - 1, sigma2.shape[1] - 1
    if first_size < 1 or second_size < 1:
        raise ValueError(f"sample sizes must be positive, got {first_size} and {second_size}")
    return float(a**2 * sigma2[1, 0] / first_size + b**2 * sigma2[0, 1] / second_size)


def hinge_kernel_tensor(world: DiscreteWorld, anchor_class: int, k: int, *, margin: float = 1.0,
                        scale: float = 1.0, reduction: str = "hardest"):
    """Symmetrised kernel of ``U_r`` on the world's support, with both samples' distributions.

    ``h(x1, x2; y1..yk) = (loss(x1, x2, y) + loss(x2, x1, y)) / 2``, with the
    hinge loss of :mod:`negsamp.ustat.evaluator`, on the class's points
    (first sample) and the other classes' points (second sample).  The
    tensor has ``m**2 s**k`` entries, so keep the world small.

    Returns
    -------
    kernel : Tensor, shape (m, m) + (s,) * k
    first_probs : Tensor, shape (m,)
        Within-class probabilities of the class's points.
    second_probs : Tensor, shape (s,)
        Probabilities of the other points as negatives, ``rho_q mu_t / (1 - rho_r)``.
    """
    check_negatives(k)
    _check_reduction(reduction)
    members = torch.nonzero(world.labels == anchor_class).flatten()
    others = torch.nonzero(world.labels != anchor_class).flatten()
    if members.numel() == 0:
        raise ValueError(f"class {anchor_class} has no support points")
    points = world.support.to(torch.float64)
    positive_similarity = points[members] @ points[members].T  # (m, m)
    negative_similarity = points[members] @ points[others].T  # (m, s)
    m, s = members.numel(), others.numel()

    def one_direction():
        # loss(x1, x2, y) on axes (x1, x2, y1, ..., yk)
        if reduction == "hardest":
            largest = negative_similarity.view((m,) + (1,) * (k - 1) + (s,))
            hardest = largest
            for axis in range(k - 1):
                shape = [m] + [1] * k
                shape[axis + 1] = s
                hardest = torch.maximum(hardest, negative_similarity.view(shape))
            hardest = hardest.expand((m,) + (s,) * k)
            scores = positive_similarity.view((m, m) + (1,) * k) - hardest.unsqueeze(1)
            return torch.clamp(margin - scale * scores, min=0)
        total = torch.zeros((m, m) + (s,) * k, dtype=torch.float64)
        for axis in range(k):
            shape = [m, 1] + [1] * k
            shape[axis + 2] = s
            scores = positive_similarity.view((m, m) + (1,) * k) - negative_similarity.view(shape)
            total = total + torch.clamp(margin - scale * scores, min=0)
        return total / k

    loss = one_direction()
    kernel = (loss + loss.transpose(0, 1)) / 2
    first_probs = world.point_probs[members] / world.point_probs[members].sum()
    second_probs = world.negative_masses(anchor_class)[others]
    return kernel, first_probs, second_probs
