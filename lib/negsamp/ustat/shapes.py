"""Class-probability quantities and the sample-complexity shapes of the bounds.

Every function takes class probabilities ``rho`` of shape ``(..., R)``, one
distribution per row, and the number ``k`` of negatives per tuple.  The
shapes drop constants, logarithms and the complexity factor of the
representation class, so they compare how the analyses scale, not the
numbers a bound would give.

Provenance of each shape (see the package docstring for the papers):

- :func:`sample_complexity_hl2025` and :func:`sample_complexity_refined` are
  the two rows of Table 1 of Hieu and Ledent (2026) as printed there.
- :func:`sample_complexity_classwise` is our own derivation of where the
  refined row comes from, through per-class effective sample sizes and
  Cauchy-Schwarz.  It is not a formula of either paper.
- :func:`sample_complexity_new_reconstructed` is our reconstruction,
  ``k / (1 - tau)**2``, of the shape for the paper's new estimator.  The
  paper's text available to us states it in words only.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "class_size_threshold",
    "collision_probability",
    "effective_class_sizes",
    "sample_complexity_classwise",
    "sample_complexity_hl2025",
    "sample_complexity_new_reconstructed",
    "sample_complexity_refined",
    "small_class_mass",
    "zipf_class_probabilities",
]


# === Validation === #


def check_negatives(k) -> int:
    """Return ``k`` as an int if it is a positive integer, else raise ``ValueError``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"the number of negatives k must be a positive integer, got {k!r}")
    return k


def _class_probabilities(class_probs) -> torch.Tensor:
    rho = torch.as_tensor(class_probs, dtype=torch.float64)
    if rho.ndim < 1 or rho.shape[-1] < 2:
        raise ValueError(f"class_probs must have shape (..., R) with R >= 2 classes, got {tuple(rho.shape)}")
    if not torch.all(rho > 0):
        raise ValueError("class_probs must be positive. Drop classes with probability 0 before calling")
    total = rho.sum(dim=-1)
    if not torch.allclose(total, torch.ones_like(total), rtol=0, atol=1e-9):
        raise ValueError(f"each row of class_probs must sum to 1, got sums in "
                         f"[{float(total.min()):.12g}, {float(total.max()):.12g}]. Divide by the sum first")
    return rho


# === Collision probability and per-class effective sizes === #


def collision_probability(class_probs, k: int) -> torch.Tensor:
    """Probability ``tau`` that ``k`` i.i.d. negatives include the anchor's class.

    The anchor's class is ``r ~ rho`` and each negative's class is an
    independent draw from ``rho``, so no negative collides with probability
    ``(1 - rho_r)**k`` and ``tau = 1 - sum_r rho_r (1 - rho_r)**k``.

    Parameters
    ----------
    class_probs : array_like, shape (..., R)
        Class probabilities, positive, each row summing to 1.
    k : int
        Negatives per tuple.

    Returns
    -------
    Tensor, shape (...)
        ``tau`` for each row.

    References
    ----------
    Hieu and Ledent (2026), section 3, define ``tau`` in words; the closed
    form above is immediate from that definition.
    """
    check_negatives(k)
    rho = _class_probabilities(class_probs)
    return 1 - (rho * (1 - rho) ** k).sum(dim=-1)


def class_size_threshold(k: int) -> float:
    """Return ``2 / (k + 2)``, where ``rho / 2`` and ``(1 - rho) / k`` meet.

    Classes at or below the threshold have enough points for about
    ``N rho / 2`` disjoint anchor-positive pairs.  Above it the other classes
    run out first, giving about ``N (1 - rho) / k`` disjoint negative sets.
    """
    check_negatives(k)
    return 2.0 / (k + 2)


def effective_class_sizes(class_probs, k: int, n: float) -> torch.Tensor:
    """Per-class effective sample size ``n min(rho_r / 2, (1 - rho_r) / k)``.

    It counts the disjoint tuples whose anchor has class ``r`` that a pool of
    ``n`` points supports in expectation.  With ``rho_min`` and ``rho_max``
    in place of ``rho_r`` it gives the single effective size of the 2025
    analysis, as summaries of that paper describe it.  The per-class version
    is our own step towards the refined shape (see
    :func:`sample_complexity_classwise`).

    Returns
    -------
    Tensor, shape (..., R)
    """
    check_negatives(k)
    if not n > 0:
        raise ValueError(f"pool size n must be positive, got {n!r}")
    rho = _class_probabilities(class_probs)
    return n * torch.minimum(rho / 2, (1 - rho) / k)


def small_class_mass(class_probs, k: int) -> torch.Tensor:
    """Mass ``theta_{k+2}`` of the classes with ``rho_r <= 2 / (k + 2)``.

    This is the quantity of Table 1 of Hieu and Ledent (2026).

    Returns
    -------
    Tensor, shape (...)
    """
    rho = _class_probabilities(class_probs)
    threshold = class_size_threshold(k)
    return torch.where(rho <= threshold, rho, torch.zeros_like(rho)).sum(dim=-1)


# === Sample-complexity shapes === #


def sample_complexity_hl2025(class_probs) -> torch.Tensor:
    """Shape ``max(1 / rho_min, 1 / (1 - rho_max))`` of the 2025 analysis.

    It is the factor of Table 1 of Hieu and Ledent (2026) for the analysis
    of Hieu and Ledent (2025).  The table multiplies it by the complexity
    term plus one.

    Returns
    -------
    Tensor, shape (...)
    """
    rho = _class_probabilities(class_probs)
    rho_min = rho.min(dim=-1).values
    rho_max = rho.max(dim=-1).values
    return torch.maximum(1 / rho_min, 1 / (1 - rho_max))


def sample_complexity_refined(class_probs, k: int) -> torch.Tensor:
    """Shape ``theta R + (1 - theta)**2 k`` of the refined analysis (Table 1, 2026).

    ``theta`` is :func:`small_class_mass` and ``R`` the number of classes.
    The table gives it as the coefficient of the squared complexity term and
    adds a burn-in term of order ``R + k**2``, which this shape leaves out.

    Returns
    -------
    Tensor, shape (...)
    """
    rho = _class_probabilities(class_probs)
    theta = small_class_mass(rho, k)
    n_classes = rho.shape[-1]
    return theta * n_classes + (1 - theta) ** 2 * k


def sample_complexity_classwise(class_probs, k: int) -> torch.Tensor:
    """Our per-class shape ``(sum_r rho_r / sqrt(min(rho_r / 2, (1 - rho_r) / k)))**2``.

    Weighting the per-class deviation ``1 / sqrt(n_r)``, with ``n_r`` from
    :func:`effective_class_sizes`, by ``rho_r`` and squaring gives the pool
    size this shape requires.  Cauchy-Schwarz bounds it by
    ``4 / (1 - rho_max)`` times :func:`sample_complexity_refined`.  This is
    our derivation, consistent with Table 1 of Hieu and Ledent (2026) but not
    taken from it.

    Returns
    -------
    Tensor, shape (...)
    """
    rho = _class_probabilities(class_probs)
    per_class = torch.minimum(rho / 2, (1 - rho) / check_negatives(k))
    return (rho / per_class.sqrt()).sum(dim=-1) ** 2


def sample_complexity_new_reconstructed(class_probs, k: int) -> torch.Tensor:
    """Reconstructed shape ``k / (1 - tau)**2`` for the new estimator of Hieu and Ledent (2026).

    NOTE: reconstruction, not the paper's formula.  The paper's introduction
    states the complexity in words as ``k (1 - tau)**2``.  A fragment of its
    main theorem carries a factor ``sqrt(k / N) / (1 - tau)`` in the
    deviation, which squares to ``k / (1 - tau)**2``, and we use the latter.

    Returns
    -------
    Tensor, shape (...)
    """
    tau = collision_probability(class_probs, k)
    return k / (1 - tau) ** 2


# === Label distributions === #


def zipf_class_probabilities(n_classes: int, exponent: float) -> torch.Tensor:
    """Zipf class probabilities ``rho_r proportional to r**(-exponent)``, ``r = 1..R``.

    ``exponent = 0`` gives uniform classes.

    Returns
    -------
    Tensor, shape (R,), float64, decreasing.
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
    if not (math.isfinite(exponent) and exponent >= 0):
        raise ValueError(f"exponent must be a finite number >= 0, got {exponent!r}")
    ranks = torch.arange(1, n_classes + 1, dtype=torch.float64)
    weights = ranks ** (-exponent)
    return weights / weights.sum()
